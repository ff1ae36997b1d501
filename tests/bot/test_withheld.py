"""Withheld photos in the bot: the notice, per-page counts for "More", and what is logged."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.handlers.search import _log, page_withheld
from bot.i18n import MESSAGES, plural_key
from bot.photos import ReadyPhoto
from bot.rendering import MAX_MESSAGE, withheld_notice
from bot.storage import TelegramUser
from bot.storage.models import Query
from engine.legal import DISCLAIMER_EN, DISCLAIMER_RU
from engine.search import Hit, SearchResult


@pytest.mark.parametrize(
    ("count", "key"),
    [(1, "withheld_one"), (21, "withheld_one"), (2, "withheld_few"), (34, "withheld_few"),
     (5, "withheld_many"), (11, "withheld_many"), (12, "withheld_many"),
     (111, "withheld_many"), (0, "withheld_many")],
)
def test_russian_plural_forms(count: int, key: str) -> None:
    assert plural_key("withheld", count) == key
    assert key in MESSAGES["en"] and key in MESSAGES["ru"]


def test_notice_says_how_many_and_why() -> None:
    assert withheld_notice("en", 0) is None
    assert withheld_notice("en", 1) == f"1 photo withheld. {DISCLAIMER_EN}"
    assert withheld_notice("en", 7) == f"7 photos withheld. {DISCLAIMER_EN}"
    assert withheld_notice("ru", 3) == f"3 фотографии скрыты. {DISCLAIMER_RU}"
    assert withheld_notice("ru", 25) == f"25 фотографий скрыто. {DISCLAIMER_RU}"
    notice = withheld_notice("ru", 101)
    assert notice is not None and notice.startswith("101 фотография скрыта.")
    assert len(notice) <= MAX_MESSAGE


def _hit(photo: str, withheld_above: int) -> Hit:
    return Hit(photo=photo, path=Path(photo), score=0.5, withheld_above=withheld_above)


def _result(hits: list[Hit], withheld: int) -> SearchResult:
    return SearchResult(query="q", language="en", blocked=False, message=None, hits=hits,
                        withheld=withheld, filter_version="legal=x;child=d@1>=0.1000;mod=none")


def test_more_page_counts_only_its_own_withheld_photos() -> None:
    # Ranks: a, [x], b, [y], [z], c, d, [w], e — x y z w excluded; page size 2.
    hits = [_hit("a", 0), _hit("b", 1), _hit("c", 3), _hit("d", 3), _hit("e", 4)]
    seen = {"a", "b"}  # the first page, which reported 1 (x)
    full = _result(hits[:4], withheld=3)  # asked for k=4: up to d
    assert page_withheld(full, seen, hits[2:4], page_size=2) == 2  # y and z
    # A short last page: the allowed photos ran out, every excluded photo counts.
    last = _result(hits, withheld=4)
    assert page_withheld(last, {"a", "b", "c", "d"}, hits[4:], page_size=2) == 1  # w
    assert page_withheld(_result(hits[:2], withheld=1), seen, [], page_size=2) == 0
    assert page_withheld(_result(hits[:2], withheld=4), seen, [], page_size=2) == 3


def test_withheld_and_filter_version_are_logged(sessions: sessionmaker[Session]) -> None:
    user = TelegramUser(7, "u", "en")
    ready = [ReadyPhoto(rank=1, photo="a.jpg", path=Path("a.jpg"), score=0.9, fingerprint="f")]
    result = _result([_hit("a.jpg", 2)], withheld=2)
    refused = SearchResult(query="photo", language="en", blocked=True, message=DISCLAIMER_EN,
                           reason="the query photo shows a child (score 0.900 >= 0.100)",
                           filter_version=result.filter_version)
    with sessions.begin() as session:
        shown = _log(session, user, 7, result, "text", "a dog", ready)
        blocked = _log(session, user, 7, refused, "photo", "FILEID", ())
    with sessions.begin() as session:
        rows = {row.id: row for row in session.scalars(select(Query))}
        assert rows[shown.id].withheld == 2
        assert rows[shown.id].filter_version == "legal=x;child=d@1>=0.1000;mod=none"
        assert rows[blocked.id].refused and rows[blocked.id].withheld is None
        assert rows[blocked.id].refusal_reason == refused.reason
        assert rows[blocked.id].filter_version == result.filter_version
