"""Callback data: round trips, the 64-byte limit, and forgery into another user or query."""

from __future__ import annotations

import pytest

from bot.callbacks import (
    MAX_CALLBACK_BYTES,
    CallbackCodec,
    CallbackDataError,
    ForgedCallbackError,
    LanguageButton,
    MoreButton,
    ReportButton,
    VoteButton,
    from_base36,
    to_base36,
)

KEY = b"k" * 32
BIG = 2**63 - 1  # Telegram ids and our surrogate keys are at most 64-bit


@pytest.fixture
def codec() -> CallbackCodec:
    return CallbackCodec(KEY)


@pytest.mark.parametrize(
    "button",
    [
        VoteButton(1, 1, 10, 3, 1),
        VoteButton(42, 11, 5, 15, -1),
        VoteButton(7, 1, 1, 1, None),
        VoteButton(BIG, 91, 10, 100, -1),
        MoreButton(1, 1, 11),
        MoreButton(BIG, 91, 101),
        ReportButton(1, 1),
        ReportButton(BIG, 100),
        LanguageButton("ru"),
        LanguageButton("en"),
    ],
)
def test_round_trip_and_size(codec: CallbackCodec, button: object) -> None:
    data = codec.encode(button, user_id=BIG)  # type: ignore[arg-type]
    assert len(data.encode()) <= MAX_CALLBACK_BYTES
    assert codec.decode(data, user_id=BIG) == button


def test_another_user_cannot_use_the_button(codec: CallbackCodec) -> None:
    data = codec.encode(VoteButton(5, 1, 10, 2, 1), user_id=100)
    with pytest.raises(ForgedCallbackError):
        codec.decode(data, user_id=101)


@pytest.mark.parametrize("field", [1, 2, 3, 4, 5])
def test_any_altered_field_is_refused(codec: CallbackCodec, field: int) -> None:
    data = codec.encode(VoteButton(5, 1, 10, 2, 1), user_id=100)
    parts = data.split(".")
    parts[field] = "d" if field == 5 else to_base36(from_base36(parts[field]) + 1)
    with pytest.raises(CallbackDataError):
        codec.decode(".".join(parts), user_id=100)


def test_other_query_more_is_refused(codec: CallbackCodec) -> None:
    data = codec.encode(MoreButton(5, 1, 11), user_id=100)
    kind, _query, start, rank, sig = data.split(".")
    forged = ".".join([kind, to_base36(6), start, rank, sig])
    with pytest.raises(ForgedCallbackError):
        codec.decode(forged, user_id=100)


@pytest.mark.parametrize("field", [1, 2])
def test_a_report_cannot_be_moved_to_another_photo_or_user(codec: CallbackCodec,
                                                           field: int) -> None:
    data = codec.encode(ReportButton(5, 2), user_id=100)
    with pytest.raises(ForgedCallbackError):
        codec.decode(data, user_id=101)
    parts = data.split(".")
    parts[field] = to_base36(from_base36(parts[field]) + 1)
    with pytest.raises(ForgedCallbackError):
        codec.decode(".".join(parts), user_id=100)


def test_signed_report_of_rank_zero_is_refused(codec: CallbackCodec) -> None:
    payload = "r.1.0"
    with pytest.raises(CallbackDataError, match="rank"):
        codec.decode(f"{payload}.{codec._sign(1, payload)}", user_id=1)


def test_another_key_makes_buttons_expire(codec: CallbackCodec) -> None:
    data = CallbackCodec(b"x" * 32).encode(MoreButton(5, 1, 11), user_id=100)
    with pytest.raises(ForgedCallbackError):
        codec.decode(data, user_id=100)


@pytest.mark.parametrize(
    "data",
    ["", "v", "x.1.2", "v.1.1.a.1.u", "m.1.2.3", "l.de", "v.1.1.a.1.u.sig.extra",
     "v.01.1.a.1.u.AAAAAAAAAAAAAAAA", "r.1.2", "r.1.2.3.sig", "é" * 40],
)
def test_garbage_is_refused(codec: CallbackCodec, data: str) -> None:
    with pytest.raises(CallbackDataError):
        codec.decode(data, user_id=1)


def test_signed_but_inconsistent_page_is_refused(codec: CallbackCodec) -> None:
    # A correctly signed payload can only come from us, but decoding still checks ranges.
    payload = "v.1.b.5.1.u"  # rank 1 outside page 11..15
    data = f"{payload}.{codec._sign(1, payload)}"
    with pytest.raises(CallbackDataError, match="outside"):
        codec.decode(data, user_id=1)


def test_short_key_is_refused() -> None:
    with pytest.raises(ValueError):
        CallbackCodec(b"short")


def test_base36() -> None:
    for number in (0, 1, 35, 36, 10**12, BIG):
        assert from_base36(to_base36(number)) == number
    with pytest.raises(ValueError):
        to_base36(-1)
