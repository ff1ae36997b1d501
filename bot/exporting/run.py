"""The admin export: checks first, then one streamed pass from the database into a file.

Order matters for "bad input changes nothing": arguments, the output path and the database's
schema revision are all checked before a single row is read, and the export itself only reads
(through a read-only snapshot). The file appears under its final name only once complete:
rows go to a temporary file next to it that is renamed at the end, so a failed or interrupted
export never leaves a truncated file that looks finished, nor clobbers an older good one.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from bot.exporting.pseudonym import Pseudonymiser
from bot.exporting.writers import FORMATS, CsvWriter, JsonlWriter, ParquetWriter, RowWriter
from bot.storage.database import reader
from bot.storage.exports import DEFAULT_BATCH_SIZE, SPECS, ExportColumn, stream_export

log = logging.getLogger(__name__)

_SUFFIX_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
STDOUT = "-"


class ExportError(Exception):
    """Something the user can fix (bad path, old database); the message is one line."""


@dataclass(frozen=True)
class ExportRequest:
    table: str
    output: str  # a path, or "-" for standard output (csv and jsonl only)
    fmt: str
    since: datetime | None = None
    until: datetime | None = None
    with_user_ids: bool = False


def infer_format(output: str, explicit: str | None) -> str:
    """`--format` when given, else from the file's suffix, else CSV."""
    if explicit is not None:
        return explicit
    return _SUFFIX_FORMATS.get(Path(output).suffix.lower(), "csv")


def output_columns(
    columns: Sequence[ExportColumn], pseudonymise: Callable[[int | None], str | None] | None
) -> tuple[tuple[ExportColumn, ...], Callable[[Sequence[tuple[Any, ...]]], list[tuple[Any, ...]]]]:
    """The columns as exported and the function that turns database rows into them.

    Pseudonymised: user and chat ids become keyed-hash strings in columns `user` and `chat`,
    and identifying columns (the username) are left out. With real ids: rows pass unchanged.
    """
    if pseudonymise is None:
        return tuple(columns), lambda rows: list(rows)
    dropped = [i for i, column in enumerate(columns) if column.sensitive == "identity"]
    kept = [column for column in columns if column.sensitive != "identity"]
    hashed = [i for i, column in enumerate(kept) if column.sensitive == "user"]
    out = tuple(
        replace(column, name=column.name.removesuffix("_id"), kind="str")
        if column.sensitive == "user"
        else column
        for column in kept
    )

    def transform(rows: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        result = []
        for row in rows:
            values = list(row)
            for i in reversed(dropped):
                del values[i]
            for i in hashed:
                values[i] = pseudonymise(values[i])
            result.append(tuple(values))
        return result

    return out, transform


class _Output:
    """The destination: standard output, or a temporary file renamed into place on success."""

    def __init__(self, output: str, fmt: str) -> None:
        self.fmt = fmt
        self.to_stdout = output == STDOUT
        self.path = Path(output)
        self.tmp: Path | None = None
        if self.to_stdout:
            if fmt == "parquet":
                raise ExportError("parquet cannot be written to standard output; use -o FILE")
            return
        if self.path.is_dir():
            raise ExportError(f"cannot write {output}: it is a directory")
        directory = self.path.parent
        if not directory.exists():
            raise ExportError(f"cannot write {output}: directory {directory} does not exist")
        if not directory.is_dir():
            raise ExportError(f"cannot write {output}: {directory} is not a directory")
        tmp = directory / f".{self.path.name}.{os.getpid()}.{secrets.token_hex(4)}.part"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as exc:
            raise ExportError(f"cannot write {output}: {exc.strerror or exc}") from None
        os.close(fd)
        self.tmp = tmp

    @contextmanager
    def writer(self, columns: Sequence[ExportColumn]) -> Iterator[RowWriter]:
        if self.to_stdout:
            yield self._text_writer(sys.stdout, columns)
            sys.stdout.flush()
            return
        assert self.tmp is not None
        if self.fmt == "parquet":
            with open(self.tmp, "wb") as raw:
                parquet = ParquetWriter(raw, columns)
                yield parquet
                parquet.close()
                raw.flush()
                os.fsync(raw.fileno())
            return
        with open(self.tmp, "w", encoding="utf-8", newline="") as stream:
            text_writer = self._text_writer(stream, columns)
            yield text_writer
            text_writer.close()
            stream.flush()
            os.fsync(stream.fileno())

    def _text_writer(self, stream: IO[str], columns: Sequence[ExportColumn]) -> RowWriter:
        if self.fmt == "jsonl":
            return JsonlWriter(stream, columns)
        return CsvWriter(stream, columns)

    def commit(self) -> None:
        if self.tmp is not None:
            os.replace(self.tmp, self.path)
            self.tmp = None

    def discard(self) -> None:
        if self.tmp is not None:
            self.tmp.unlink(missing_ok=True)
            self.tmp = None


def open_output(output: str, fmt: str) -> _Output:
    """Check that the output can be written (before touching the database)."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return _Output(output, fmt)


def write_export(
    engine: Engine,
    request: ExportRequest,
    destination: _Output,
    pseudonymiser: Pseudonymiser | None,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> int:
    """Stream the export into `destination`; returns the number of rows written."""
    spec = SPECS[request.table]
    columns, transform = output_columns(spec.columns, pseudonymiser)
    rows = 0
    try:
        with Session(reader(engine)) as session, destination.writer(columns) as writer:
            for batch in stream_export(
                session,
                request.table,
                since=request.since,
                until=request.until,
                batch_size=batch_size,
            ):
                writer.write(transform(batch))
                rows += len(batch)
            session.rollback()
        destination.commit()
    except SQLAlchemyError as exc:
        destination.discard()
        lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        reason = lines[0] if lines else type(exc).__name__
        raise ExportError(f"export failed reading the database: {reason}") from None
    except BaseException:
        destination.discard()
        raise
    log.info("exported %d %s rows as %s", rows, request.table, request.fmt)
    return rows
