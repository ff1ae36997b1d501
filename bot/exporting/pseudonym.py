"""Pseudonymous user ids for exports: a keyed hash, stable across exports, not reversible.

A plain hash of a Telegram id could be reversed by hashing every plausible id; a keyed HMAC
cannot without the key. The key is EXPORT_HASH_KEY, or a random key created once in
DATA_DIR/export_hash.key (mode 0600) and reused, so the same user gets the same pseudonym in
every export and exports can be joined with each other but not with Telegram.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
from pathlib import Path

KEY_BYTES = 32
PSEUDONYM_HEX_CHARS = 16  # 64 bits: collisions stay negligible for millions of users


class KeyFileError(OSError):
    """The key file cannot be read or created; the message is meant for the user."""


def load_or_create_key(path: Path) -> bytes:
    """Read the key file, or create it (0600) if missing; safe when two exports race.

    The key is written to a temporary file and hard-linked into place, which fails if the
    file appeared meanwhile, so nobody ever reads a half-written key.
    """
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(
            f"cannot read the export hash key {path}: {getattr(exc, 'strerror', None) or exc}; "
            "set EXPORT_HASH_KEY or fix DATA_DIR"
        ) from None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(secrets.token_hex(KEY_BYTES) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            with contextlib.suppress(FileExistsError):  # another export made it first
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return _read_key(path)
    except KeyFileError:
        raise
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(
            f"cannot create the export hash key {path}: {getattr(exc, 'strerror', None) or exc}; "
            "set EXPORT_HASH_KEY or make DATA_DIR writable"
        ) from None


def _read_key(path: Path) -> bytes:
    text = path.read_text(encoding="ascii").strip()
    if not text:
        raise KeyFileError(f"the export hash key {path} is empty; delete it to make a new one")
    return text.encode("ascii")


class Pseudonymiser:
    """Maps a Telegram user (or chat) id to a stable pseudonym such as `u3f9c...`.

    Users recur on every row of their queries, so pseudonyms are memoised; the memo is
    cleared when it reaches CACHE_SIZE entries, which keeps memory bounded on any export.
    """

    CACHE_SIZE = 100_000

    def __init__(self, key: bytes) -> None:
        if not key:
            raise ValueError("empty pseudonymisation key")
        self._key = key
        self._cache: dict[int, str] = {}

    def __call__(self, telegram_id: int | None) -> str | None:
        if telegram_id is None:
            return None
        cached = self._cache.get(telegram_id)
        if cached is not None:
            return cached
        digest = hmac.new(self._key, str(telegram_id).encode("ascii"), hashlib.sha256)
        pseudonym = "u" + digest.hexdigest()[:PSEUDONYM_HEX_CHARS]
        if len(self._cache) >= self.CACHE_SIZE:
            self._cache.clear()
        self._cache[telegram_id] = pseudonym
        return pseudonym
