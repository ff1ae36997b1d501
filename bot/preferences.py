"""The interface language each user chose with /language, remembered across restarts.

The storage schema has no place for a user's *chosen* language (`users.language` is the
client's language code, refreshed on every query), and schema changes belong to migrations,
so the choices live in a small JSON file in DATA_DIR: read once at start, held in memory,
rewritten atomically (temporary file + rename) on each change. A corrupt file is logged and
treated as empty rather than stopping the bot: the worst case is users seeing their Telegram
language again.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

from bot.i18n import LANGUAGES, Language

log = logging.getLogger(__name__)


class LanguagePreferences:
    """{user id: language} with a JSON file behind it; safe to use from several threads."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._choices: dict[int, Language] = {}
        if path is not None:
            self._choices = self._load(path)

    @staticmethod
    def _load(path: Path) -> dict[int, Language]:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable language preferences %s: %s", path, exc)
            return {}
        choices: dict[int, Language] = {}
        if isinstance(raw, dict):
            for key, value in raw.items():
                if isinstance(value, str) and value in LANGUAGES and str(key).lstrip("-").isdigit():
                    choices[int(key)] = "ru" if value == "ru" else "en"
        return choices

    def get(self, user_id: int) -> Language | None:
        return self._choices.get(user_id)

    def set(self, user_id: int, language: Language) -> None:
        """Remember the choice; blocking file I/O, so call it through `asyncio.to_thread`."""
        with self._lock:
            if self._choices.get(user_id) == language:
                return
            self._choices[user_id] = language
            if self._path is not None:
                self._save(self._path, dict(self._choices))

    @staticmethod
    def _save(path: Path, choices: dict[int, Language]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump({str(k): v for k, v in sorted(choices.items())}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
