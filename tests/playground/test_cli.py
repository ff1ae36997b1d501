"""`python -m bot.playground`: one local port for the Bot API and the web chat; SIGTERM exits 0."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from bot.playground import BotApiStandIn
from tests.conftest import PYTHON, REPO_ROOT, subprocess_env


def test_cli_serves_bot_api_and_web_chat_then_stops_on_sigterm(tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    process = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "bot.playground",
            "--port",
            "0",
            "--token",
            "42:abc",
            "--port-file",
            str(port_file),
        ],
        cwd=REPO_ROOT,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not port_file.exists() or not port_file.read_text().strip():
            assert process.poll() is None, process.communicate()[0]
            assert time.monotonic() < deadline, "the playground did not start"
            time.sleep(0.05)
        origin = f"http://127.0.0.1:{int(port_file.read_text())}"
        with urllib.request.urlopen(f"{origin}/bot42:abc/getMe", timeout=5) as response:
            assert json.load(response)["result"]["username"] == "photo_search_bot"
        with urllib.request.urlopen(f"{origin}/", timeout=5) as response:
            assert b"chat.js" in response.read()
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, output
    assert f"{origin}/" in output and f"TELEGRAM_API_BASE_URL={origin}/bot" in output


def test_only_loopback_addresses() -> None:
    with pytest.raises(ValueError, match="loopback"):
        BotApiStandIn("1:a", host="0.0.0.0")
    BotApiStandIn("1:a", host="::1")
