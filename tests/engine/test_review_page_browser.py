"""The moderation review page in a real browser: tick photos, run the command it builds.

The page changes nothing by itself; it builds a `python -m engine moderate --allow ...` line.
That line must name exactly the ticked photos however odd their file names (quotes, spaces,
`$(...)`), so it is split here as a shell would (`shlex.split`) and then run.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from engine.cli import main
from engine.encoders import load_encoder
from engine.encoders.base import encode_images
from engine.moderation import read_overrides
from tests.browser import needs_chromium, open_page
from tests.engine.conftest import make_photo
from tests.engine.test_child_filter import single_out

pytestmark = needs_chromium

NAMES = ["it's me.jpg", "plain.jpg", "$(touch pwned).jpg", "sea & sky/dawn.png"]


def _listed(page: Path) -> list[str]:
    import html

    return [html.unescape(v) for v in
            re.findall(r"value='([^']*)'", page.read_text(encoding="utf-8"))]


async def test_ticked_photos_become_one_allow_command(
        tiny_clip_spec: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    photos = tmp_path / "photos"
    for number, name in enumerate(NAMES):
        make_photo(photos / name, (40 + 50 * number, 90, 200 - 40 * number), stripe=number + 2)
    encoder = load_encoder(tiny_clip_spec)
    detector = single_out(encoder.name, encode_images(encoder, [photos / n for n in NAMES]),
                          [0])
    monkeypatch.setenv("ENGINE_CHILD_DETECTOR",
                       str(detector.save(tmp_path / "detector", card="", metrics={})))
    monkeypatch.setenv("ENGINE_CHILD_THRESHOLD", "0")  # every photo hidden
    index = tmp_path / "idx"
    assert main(["index", str(photos), "--index", str(index), "--model", tiny_clip_spec,
                 "--quiet"]) == 0
    sheet = tmp_path / "review.html"
    assert main(["moderate", "--index", str(index), "--review", str(sheet)]) == 0
    listed = _listed(sheet)
    assert sorted(listed) == sorted(NAMES)
    assert listed[-1] == NAMES[0]  # the photo the detector singles out is the most certain
    ticked = [listed[1], listed[2], listed[3]]

    async for page in open_page(sheet.as_uri(), tmp_path / "chromium"):
        await page.wait("document.querySelectorAll('input.pick').length === 4")
        assert await page.js("document.getElementById('cmd').value") == ""
        for position in (1, 2, 3):
            await page.js(f"document.querySelectorAll('input.pick')[{position}].click()")
        await page.js("document.querySelectorAll('input.pick')[2].click()")  # changed mind
        command = await page.js("document.getElementById('cmd').value")

    argv = shlex.split(command)
    assert argv[:7] == ["python", "-m", "engine", "moderate", "--index", str(index), "--allow"]
    assert argv[7:] == [ticked[0], ticked[2], "--note", "reviewed: no child"]
    capsys.readouterr()
    assert main(argv[3:]) == 0
    assert not (Path.cwd() / "pwned").exists() and not (tmp_path / "pwned").exists()
    assert {o.photo: o.decision for o in read_overrides(index).items} == {
        ticked[0]: "allow", ticked[2]: "allow"}
    assert main(["moderate", "--index", str(index), "--review", str(sheet)]) == 0
    assert _listed(sheet) == [listed[0], listed[2]]
