"""`python -m bot export`: contents, formats, pseudonyms, windows, and bad input (exit 2)."""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import os
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from subprocess import run as subprocess_run
from typing import Any

import pyarrow.parquet as pq
import pytest
from sqlalchemy import Engine, inspect, text
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from bot.cli import main
from bot.exporting.dates import DateArgumentError, parse_bound, parse_window
from bot.exporting.pseudonym import Pseudonymiser, load_or_create_key
from bot.exporting.run import infer_format, output_columns
from bot.storage import TelegramUser, log_query, report_photo, set_vote, stream_export
from bot.storage.database import make_engine, reader
from bot.storage.exports import SPECS
from tests.conftest import PYTHON, subprocess_env

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
ANN = TelegramUser(5_000_000_001, "ann_photo", "en")
BOB = TelegramUser(5_000_000_002, "bob_photo", "ru")
CAROL = TelegramUser(5_000_000_003, None, "ru")
MODEL = "dual-lite0-minilm-e5@1.0.0"

Sessions = sessionmaker[Session]


def populate(sessions: Sessions) -> None:
    """Three users, five queries (one refused, one a photo query), votes incl. a withdrawal."""

    def q(user: TelegramUser, text_: str, at: datetime, photos: list[str], **kw: Any) -> list[int]:
        with sessions.begin() as session:
            logged = log_query(
                session,
                user=user,
                chat_id=user.id,
                text=text_,
                model_version=MODEL,
                latency_ms=12.5,
                hits=[(photo, 0.9 - i / 10) for i, photo in enumerate(photos)],
                now=at,
                **kw,
            )
        return [s.id for s in logged.shown]

    def vote(user: TelegramUser, shown: int, value: int | None, at: datetime) -> None:
        with sessions.begin() as session:
            set_vote(session, user_id=user.id, shown_photo_id=shown, vote=value, now=at)

    a1, b1, c1 = q(ANN, "dog on beach", T0, ["a.jpg", "b.jpg", "c.jpg"], language="en")
    vote(ANN, a1, 1, T0 + timedelta(minutes=1))
    vote(ANN, b1, -1, T0 + timedelta(minutes=2))
    vote(ANN, c1, 1, T0 + timedelta(minutes=3))
    vote(ANN, c1, None, T0 + timedelta(minutes=4))  # withdrawn: in no export
    a2, b2 = q(BOB, "dog on beach", T0 + timedelta(days=1), ["a.jpg", "b.jpg"])
    vote(BOB, a2, 1, T0 + timedelta(days=1, minutes=1))
    vote(BOB, b2, 1, T0 + timedelta(days=1, minutes=2))
    q(BOB, "forbidden words", T0 + timedelta(days=2), [], refused=True, refusal_reason="legal")
    (p1,) = q(BOB, "AgADphotoid", T0 + timedelta(days=2, hours=1), ["a.jpg"], kind="photo")
    vote(BOB, p1, 1, T0 + timedelta(days=2, hours=1, minutes=1))  # photo query: not a label
    (d1,) = q(CAROL, "кошка на диване", T0 + timedelta(days=3), ["d.jpg"], language="ru")
    vote(CAROL, d1, -1, T0 + timedelta(days=3, minutes=1))
    with sessions.begin() as session:  # 🚫 on BOB's second photo of "dog on beach"
        query_id = session.execute(text("SELECT query_id FROM shown_photos WHERE id = :s"),
                                   {"s": b2}).scalar_one()
        report_photo(session, user_id=BOB.id, query_id=query_id, rank=2,
                     now=T0 + timedelta(days=1, minutes=5))


EXPECTED_LABELS = [
    {"photo": "a.jpg", "query": "dog on beach", "label": 1.0, "votes": 2},
    {"photo": "b.jpg", "query": "dog on beach", "label": 0.5, "votes": 2},
    {"photo": "d.jpg", "query": "кошка на диване", "label": 0.0, "votes": 1},
]


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str) -> Path:
    """Settings for in-process `main()` calls; returns the working directory."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("EXPORT_HASH_KEY", raising=False)
    return work


@pytest.fixture
def populated(sessions: Sessions) -> Sessions:
    populate(sessions)
    return sessions


def read_export(path: Path, fmt: str) -> list[dict[str, Any]]:
    if fmt == "csv":
        with path.open(encoding="utf-8", newline="") as handle:
            return list(csv.DictReader(handle))
    if fmt == "jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    table: list[dict[str, Any]] = pq.read_table(path).to_pylist()
    return table


def normalise(value: Any) -> Any:
    """Bring a value read back from `fmt` to the JSON representation, to compare formats."""
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (alembic_version included), to prove nothing changed."""
    engine = make_engine(url, poolclass=NullPool)
    try:
        tables = inspect(engine).get_table_names()
        with engine.connect() as connection:
            return {
                table: sorted(
                    (
                        tuple(map(repr, row))
                        for row in connection.execute(text(f"SELECT * FROM {table}"))
                    ),
                )
                for table in tables
            }
    finally:
        engine.dispose()


# --- contents and formats -------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_export_tables_in_every_format(populated: Sessions, env: Path, fmt: str) -> None:
    for table in ("queries", "feedback", "labels", "reports"):
        out = env / f"{table}.{fmt}"
        assert main(["export", table, "-o", str(out)]) == 0
        got = read_export(out, fmt)
        columns = [c.name for c in output_columns(SPECS[table].columns, Pseudonymiser(b"k"))[0]]
        assert all(list(row) == columns for row in got)
        if table == "queries":
            assert [r["text"] for r in got] == [
                "dog on beach",
                "dog on beach",
                "forbidden words",
                "AgADphotoid",
                "кошка на диване",
            ]
            refused = next(r for r in got if r["text"] == "forbidden words")
            assert refused["refused"] in (True, "true")
            assert refused["refusal_reason"] == "legal"
            assert normalise(got[0]["created_at"]) == "2024-05-01T10:00:00+00:00"
            assert str(got[0]["n_results"]) == "3"
            assert got[0]["model_version"] == MODEL
        elif table == "feedback":
            assert [(r["photo"], str(r["vote"])) for r in got] == [
                ("a.jpg", "1"),
                ("b.jpg", "-1"),
                ("a.jpg", "1"),
                ("b.jpg", "1"),
                ("a.jpg", "1"),
                ("d.jpg", "-1"),
            ]
            assert normalise(got[0]["voted_at"]) == "2024-05-01T10:01:00+00:00"
        elif table == "reports":
            assert [(r["query"], r["photo"], str(r["rank"])) for r in got] == [
                ("dog on beach", "b.jpg", "2")]
            assert normalise(got[0]["reported_at"]) == "2024-05-02T10:05:00+00:00"
            assert str(BOB.id) not in json.dumps(got, default=str)
        else:
            assert [
                {
                    k: (float(v) if k == "label" else int(v) if k == "votes" else v)
                    for k, v in r.items()
                }
                for r in got
            ] == EXPECTED_LABELS


def test_pseudonyms(
    populated: Sessions, env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = env / "1.csv", env / "2.csv"
    assert main(["export", "queries", "-o", str(first)]) == 0
    assert main(["export", "feedback", "-o", str(second)]) == 0
    key_file = tmp_path / "data" / "export_hash.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    for path in (first, second):
        content = path.read_text(encoding="utf-8")
        for user in (ANN, BOB, CAROL):
            assert str(user.id) not in content
        assert "ann_photo" not in content and "username" not in content
    queries = read_export(first, "csv")
    key = key_file.read_text().strip().encode()
    expected = "u" + hmac.new(key, str(ANN.id).encode(), hashlib.sha256).hexdigest()[:16]
    assert queries[0]["user"] == expected == queries[0]["chat"]
    assert {r["user"] for r in queries} == {
        "u" + hmac.new(key, str(u.id).encode(), hashlib.sha256).hexdigest()[:16]
        for u in (ANN, BOB, CAROL)
    }
    # Stable across exports (the key file is reused), and joinable between tables.
    assert main(["export", "queries", "-o", str(first)]) == 0
    assert read_export(first, "csv") == queries
    assert {r["user"] for r in read_export(second, "csv")} <= {r["user"] for r in queries}
    # EXPORT_HASH_KEY wins over the key file.
    monkeypatch.setenv("EXPORT_HASH_KEY", "operator-key")
    assert main(["export", "queries", "-o", str(first)]) == 0
    keyed = read_export(first, "csv")[0]["user"]
    assert (
        keyed
        == "u" + hmac.new(b"operator-key", str(ANN.id).encode(), hashlib.sha256).hexdigest()[:16]
    )


def test_with_user_ids(populated: Sessions, env: Path) -> None:
    out = env / "q.jsonl"
    assert main(["export", "queries", "--with-user-ids", "-o", str(out)]) == 0
    rows = read_export(out, "jsonl")
    assert rows[0]["user_id"] == ANN.id and rows[0]["username"] == "ann_photo"
    assert rows[0]["chat_id"] == ANN.id
    assert not (env.parent / "data" / "export_hash.key").exists()  # no key needed


def test_date_window(populated: Sessions, env: Path) -> None:
    out = env / "q.jsonl"
    assert (
        main(
            ["export", "queries", "--since", "2024-05-02", "--until", "2024-05-03", "-o", str(out)]
        )
        == 0
    )
    assert [r["text"] for r in read_export(out, "jsonl")] == [
        "dog on beach",
        "forbidden words",
        "AgADphotoid",
    ]
    assert main(["export", "labels", "--until", "2024-05-01", "-o", str(out)]) == 0
    assert [(r["photo"], r["votes"]) for r in read_export(out, "jsonl")] == [
        ("a.jpg", 1),
        ("b.jpg", 1),
    ]
    assert main(["export", "feedback", "--since", "2024-05-04T10:00:30Z", "-o", str(out)]) == 0
    assert [r["photo"] for r in read_export(out, "jsonl")] == ["d.jpg"]


def test_stdout(populated: Sessions, env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "labels", "-o", "-"]) == 0
    captured = capsys.readouterr()
    assert next(iter(csv.DictReader(io.StringIO(captured.out))))["photo"] == "a.jpg"
    assert "exported 3 labels rows" in captured.err


def test_export_does_not_block_writers_and_sees_a_snapshot(
    populated: Sessions, engine: Engine
) -> None:
    """A long export neither holds SQLite's write lock nor sees rows added while it runs."""
    with Session(reader(engine)) as session:
        batches = stream_export(session, "queries", batch_size=2)
        first = next(batches)
        done = threading.Event()

        def write() -> None:
            with populated.begin() as writer:
                log_query(writer, user=ANN, chat_id=1, text="late", model_version="m", latency_ms=1)
            done.set()

        thread = threading.Thread(target=write)
        thread.start()
        assert done.wait(10), "writer blocked by the export"
        thread.join()
        rest = [row for batch in batches for row in batch]
    assert len(first) + len(rest) == 5


# --- bad input: one line on stderr, exit 2, nothing changed ---------------------------------


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


RunCli = Callable[..., Ran]


@pytest.fixture
def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> RunCli:
    """Run the CLI in `cwd` as an admin would: `main()` in-process (fast), or with
    `subprocess=True` as `python -m bot` in a child process."""

    def run(*args: str, url: str, cwd: Path, subprocess: bool = False) -> Ran:
        cwd.mkdir(exist_ok=True)
        if subprocess:
            done = subprocess_run(
                [PYTHON, "-m", "bot", *args],
                cwd=cwd,
                env=subprocess_env(DATABASE_URL=url, DATA_DIR=str(cwd / "data")),
                capture_output=True,
                text=True,
                timeout=120,
            )
            return Ran(done.returncode, done.stdout, done.stderr)
        with monkeypatch.context() as patch:
            patch.chdir(cwd)
            patch.setenv("DATABASE_URL", url)
            patch.setenv("DATA_DIR", str(cwd / "data"))
            patch.delenv("EXPORT_HASH_KEY", raising=False)
            capsys.readouterr()
            code = main(list(args))
            captured = capsys.readouterr()
        return Ran(code, captured.out, captured.err)

    return run


def test_subprocess_export(
    populated: Sessions, db_url: str, tmp_path: Path, run_cli: RunCli
) -> None:
    work = tmp_path / "work"
    done = run_cli(
        *("export", "labels", "--format", "parquet", "-o", "labels.out"),
        url=db_url,
        cwd=work,
        subprocess=True,
    )
    assert done.returncode == 0, done.stderr
    assert pq.read_table(work / "labels.out").to_pylist() == EXPECTED_LABELS


BAD_INPUTS = {
    "malformed date": (["export", "queries", "--since", "2024-13-45", "-o", "x.csv"], "--since"),
    "not a date": (["export", "queries", "--until", "yesterday", "-o", "x.csv"], "--until"),
    "empty window": (
        ["export", "queries", "--since", "2024-05-02", "--until", "2024-05-01", "-o", "x.csv"],
        "not before",
    ),
    "unknown table": (["export", "photos", "-o", "x.csv"], "invalid choice"),
    "unknown format": (["export", "queries", "--format", "xlsx", "-o", "x.csv"], "invalid choice"),
    "no output": (["export", "queries"], "required"),
    "missing directory": (["export", "queries", "-o", "no/such/dir/x.csv"], "does not exist"),
    "output is a directory": (["export", "queries", "-o", "."], "is a directory"),
    "under a file": (["export", "queries", "-o", "existing.csv/x.csv"], "not a directory"),
    "parquet to stdout": (["export", "queries", "--format", "parquet", "-o", "-"], "parquet"),
    "unknown command": (["frobnicate"], "invalid choice"),
}


@pytest.mark.parametrize(
    ("case", "via_subprocess"),
    [(case, False) for case in BAD_INPUTS] + [("malformed date", True), ("unknown table", True)],
)
def test_bad_input_exits_2_and_changes_nothing(
    populated: Sessions,
    db_url: str,
    tmp_path: Path,
    run_cli: RunCli,
    case: str,
    via_subprocess: bool,
) -> None:
    args, hint = BAD_INPUTS[case]
    work = tmp_path / "work"
    work.mkdir()
    existing = work / "existing.csv"
    existing.write_text("keep me\n")
    before = snapshot(db_url)
    done = run_cli(*args, url=db_url, cwd=work, subprocess=via_subprocess)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and hint in lines[0], done.stderr
    assert done.stdout == ""
    assert snapshot(db_url) == before
    assert sorted(p.name for p in work.iterdir()) == ["existing.csv"]  # no partial files
    assert existing.read_text() == "keep me\n"


def test_unmigrated_database_is_refused(empty_db_url: str, tmp_path: Path, run_cli: RunCli) -> None:
    before = None if empty_db_url.startswith("sqlite") else snapshot(empty_db_url)
    work = tmp_path / "work"
    done = run_cli("export", "queries", "-o", "x.csv", url=empty_db_url, cwd=work)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "not migrated" in lines[0] and "python -m bot migrate" in lines[0]
    assert list(work.iterdir()) == []
    if before is None:
        assert not Path(empty_db_url.removeprefix("sqlite:///")).exists()  # not even created
    else:
        assert snapshot(empty_db_url) == before


def test_database_from_a_newer_version_is_refused(
    populated: Sessions, db_url: str, tmp_path: Path, run_cli: RunCli
) -> None:
    with populated.begin() as session:
        session.execute(text("UPDATE alembic_version SET version_num = 'fffffffff'"))
    done = run_cli("export", "queries", "-o", "x.csv", url=db_url, cwd=tmp_path / "work")
    assert done.returncode == 2
    assert "does not know" in done.stderr and len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("url", "hint"),
    [
        ("mysql://u@h/db", "unsupported database"),
        ("postgresql+psycopg://nobody:secretpw@127.0.0.1:1/none", "cannot use the database"),
    ],
)
def test_unusable_database_url(tmp_path: Path, run_cli: RunCli, url: str, hint: str) -> None:
    done = run_cli("export", "queries", "-o", "x.csv", url=url, cwd=tmp_path / "work")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and hint in lines[0], done.stderr
    assert "secretpw" not in done.stderr
    assert list((tmp_path / "work").iterdir()) == []  # the temporary output was removed


def test_unwritable_key_location(
    populated: Sessions,
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Without EXPORT_HASH_KEY the key file must be creatable; if not: one line, exit 2."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "blocker").write_text("a file where DATA_DIR should be")
    monkeypatch.chdir(work)
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("DATA_DIR", str(work / "blocker" / "data"))
    monkeypatch.delenv("EXPORT_HASH_KEY", raising=False)
    assert main(["export", "queries", "-o", "x.csv"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "EXPORT_HASH_KEY" in err[0]
    assert sorted(p.name for p in work.iterdir()) == ["blocker"]


def test_export_without_table_says_what_is_missing(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "required" in err[0] and "table" in err[0] and "--help" in err[0]


def test_no_subcommand_runs_the_bot_and_needs_a_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`python -m bot` is the bot itself (issue 4); without a token it says so in one line."""
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    assert main([]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "TELEGRAM_BOT_TOKEN" in err[0]


# --- pure parts -----------------------------------------------------------------------------


def test_parse_bound() -> None:
    day = datetime(2024, 5, 1, tzinfo=UTC)
    assert parse_bound("2024-05-01", option="--since", end=False) == day
    assert parse_bound("2024-05-01", option="--until", end=True) == day + timedelta(days=1)
    assert parse_bound("2024-05-01T10:30", option="--until", end=True) == day.replace(
        hour=10, minute=30
    )
    assert parse_bound("2024-05-01 10:30:00+02:00", option="--since", end=False) == day.replace(
        hour=8, minute=30
    )
    assert parse_bound("2024-05-01T10:30Z", option="--since", end=False) == day.replace(
        hour=10, minute=30
    )
    for bad in ("2024-02-30", "01.05.2024", "2024-5-1", "", "2024-05-01T25:00", "20240501"):
        with pytest.raises(DateArgumentError, match="is not a date"):
            parse_bound(bad, option="--since", end=False)
    assert parse_window(None, None) == (None, None)
    with pytest.raises(DateArgumentError):
        parse_window("2024-05-02", "2024-05-01")
    assert parse_window("2024-05-01", "2024-05-01") == (day, day + timedelta(days=1))


def test_infer_format() -> None:
    assert infer_format("a.parquet", None) == "parquet"
    assert infer_format("a.JSONL", None) == "jsonl"
    assert infer_format("a.ndjson", None) == "jsonl"
    assert infer_format("a.txt", None) == "csv"
    assert infer_format("-", None) == "csv"
    assert infer_format("a.parquet", "csv") == "csv"


def test_output_columns() -> None:
    spec = SPECS["queries"]
    columns, transform = output_columns(spec.columns, lambda uid: f"p{uid}")
    names = [c.name for c in columns]
    assert "username" not in names and "user_id" not in names
    assert names[2:4] == ["user", "chat"]
    row = tuple(range(len(spec.columns)))
    assert transform([row])[0][2:4] == ("p2", "p3")
    plain, identity = output_columns(spec.columns, None)
    assert [c.name for c in plain] == list(spec.names)
    assert identity([row]) == [row]


def test_key_file_created_once_even_when_racing(tmp_path: Path) -> None:
    path = tmp_path / "d" / "export_hash.key"
    keys: list[bytes] = []
    threads = [
        threading.Thread(target=lambda: keys.append(load_or_create_key(path))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(keys)) == 1 and len(keys[0]) == 64
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(os.listdir(path.parent)) == ["export_hash.key"]
    assert Pseudonymiser(keys[0])(1) == Pseudonymiser(keys[0])(1) != Pseudonymiser(b"x")(1)
    assert Pseudonymiser(b"x")(None) is None
