"""Row writers for the export formats: CSV, JSON Lines, Parquet.

Each writer takes rows batch by batch and keeps at most one Parquet row group in memory, so
the memory an export needs does not grow with the number of rows. Values are written the same
way in every format: timestamps in ISO 8601 UTC (`2024-05-01T12:00:00+00:00`; Parquet:
timestamp[us, UTC]), booleans as true/false, missing values empty (CSV) or null.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import IO, Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from bot.storage.exports import ColumnKind, ExportColumn

FORMATS = ("csv", "jsonl", "parquet")
PARQUET_ROW_GROUP = 65_536

_ARROW_TYPES: dict[ColumnKind, pa.DataType] = {
    "int": pa.int64(),
    "float": pa.float64(),
    "str": pa.string(),
    "bool": pa.bool_(),
    "datetime": pa.timestamp("us", tz="UTC"),
}


class RowWriter(Protocol):
    def write(self, rows: Sequence[tuple[Any, ...]]) -> None: ...

    def close(self) -> None: ...


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _bool(value: bool | None) -> str | None:
    return None if value is None else ("true" if value else "false")


_TEXT_CONVERTERS: dict[ColumnKind, Callable[[Any], Any]] = {"datetime": _iso, "bool": _bool}


class CsvWriter:
    """CSV with a header row (RFC 4180 quoting, `\\n` line ends, UTF-8)."""

    def __init__(self, stream: IO[str], columns: Sequence[ExportColumn]) -> None:
        self._writer = csv.writer(stream, lineterminator="\n")
        self._writer.writerow([column.name for column in columns])
        # Only timestamps and booleans need converting; everything else goes out as is.
        self._convert = [
            (i, _TEXT_CONVERTERS[column.kind])
            for i, column in enumerate(columns)
            if column.kind in _TEXT_CONVERTERS
        ]

    def write(self, rows: Sequence[tuple[Any, ...]]) -> None:
        convert = self._convert
        out = []
        for row in rows:
            values = list(row)
            for i, function in convert:
                values[i] = function(values[i])
            out.append(values)
        self._writer.writerows(out)

    def close(self) -> None:
        pass


class JsonlWriter:
    """One JSON object per line, keys in column order, non-ASCII text kept as is."""

    def __init__(self, stream: IO[str], columns: Sequence[ExportColumn]) -> None:
        self._stream = stream
        self._names = [column.name for column in columns]
        self._dates = [i for i, column in enumerate(columns) if column.kind == "datetime"]
        self._encode = json.JSONEncoder(ensure_ascii=False).encode

    def write(self, rows: Sequence[tuple[Any, ...]]) -> None:
        names, dates, encode = self._names, self._dates, self._encode
        lines = []
        for row in rows:
            values = list(row)
            for i in dates:
                values[i] = _iso(values[i])
            lines.append(encode(dict(zip(names, values, strict=True))))
        lines.append("")
        self._stream.write("\n".join(lines))

    def close(self) -> None:
        pass


class ParquetWriter:
    """Typed Parquet (zstd), one row group per PARQUET_ROW_GROUP rows."""

    def __init__(self, sink: str | IO[bytes], columns: Sequence[ExportColumn]) -> None:
        self._schema = pa.schema(
            [pa.field(column.name, _ARROW_TYPES[column.kind]) for column in columns]
        )
        self._writer = pq.ParquetWriter(sink, self._schema, compression="zstd")
        self._pending: list[tuple[Any, ...]] = []

    def write(self, rows: Sequence[tuple[Any, ...]]) -> None:
        self._pending.extend(rows)
        if len(self._pending) >= PARQUET_ROW_GROUP:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        columns = list(zip(*self._pending, strict=True))
        arrays = [
            pa.array(values, type=field.type)
            for values, field in zip(columns, self._schema, strict=True)
        ]
        self._writer.write_table(pa.Table.from_arrays(arrays, schema=self._schema))
        self._pending = []

    def close(self) -> None:
        self._flush()
        self._writer.close()
