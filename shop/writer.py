"""Writing the shop: Arrow tables built from arrays, then Parquet or CSV, plus ground truth.

String columns are made by taking from a small dictionary of strings (ids, event types,
devices), never by formatting millions of Python strings, and timestamps are formatted for CSV
with vectorised digit arithmetic, which is far faster than strftime.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

logger = logging.getLogger(__name__)

TIMESTAMP_TYPE = pa.timestamp("ms", tz="UTC")


def id_strings(prefix: str, n: int, width: int) -> list[str]:
    """``prefix`` + zero-padded numbers, e.g. ``u000123``; one entry per number below ``n``."""
    return [f"{prefix}{i:0{width}d}" for i in range(n)]


def take_strings(dictionary: list[str] | tuple[str, ...], codes: np.ndarray) -> pa.Array:
    """Expand integer codes into a plain string column via an Arrow take."""
    return pa.array(dictionary, type=pa.string()).take(pa.array(codes, type=pa.int64()))


def timestamps(ms: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(ms, dtype=np.int64), type=TIMESTAMP_TYPE)


def iso_utc(ms: np.ndarray) -> np.ndarray:
    """ISO 8601 strings ``YYYY-MM-DDTHH:MM:SS.mmmZ`` as a fixed-width bytes array."""
    ms = np.asarray(ms, dtype=np.int64)
    days = np.floor_divide(ms, 86_400_000)
    rest = ms - days * 86_400_000
    date = days.astype("datetime64[D]")
    year = date.astype("datetime64[Y]").astype(np.int64) + 1970
    month = date.astype("datetime64[M]").astype(np.int64) % 12 + 1
    day = (date - date.astype("datetime64[M]")).astype(np.int64) + 1
    hour, rest = np.divmod(rest, 3_600_000)
    minute, rest = np.divmod(rest, 60_000)
    second, milli = np.divmod(rest, 1_000)
    out = np.zeros((len(ms), 24), dtype=np.uint8)

    def put(col: int, value: np.ndarray, width: int) -> None:
        for k in range(width):
            out[:, col + width - 1 - k] = ord("0") + (value // 10**k) % 10

    put(0, year, 4)
    put(5, month, 2)
    put(8, day, 2)
    put(11, hour, 2)
    put(14, minute, 2)
    put(17, second, 2)
    put(20, milli, 3)
    for col, char in ((4, "-"), (7, "-"), (10, "T"), (13, ":"), (16, ":"), (19, "."), (23, "Z")):
        out[:, col] = ord(char)
    return out.view("S24").ravel()


def _csv_ready(table: pa.Table) -> pa.Table:
    """Timestamps become ISO 8601 text with ``Z``; nulls stay empty."""
    columns = []
    for name in table.column_names:
        column = table.column(name).combine_chunks()
        if pa.types.is_timestamp(column.type):
            ms = column.cast(pa.int64()).to_numpy(zero_copy_only=False)
            text = pa.array(iso_utc(np.nan_to_num(ms).astype(np.int64)), type=pa.binary(24))
            column = pa.Array.from_buffers(
                pa.string(),
                len(text),
                [column.buffers()[0], _offsets(len(text)), text.buffers()[1]],
                null_count=column.null_count,
            )
        columns.append(column)
    return pa.table(columns, names=table.column_names)


def _offsets(n: int) -> pa.Buffer:
    return pa.py_buffer(np.arange(0, 24 * (n + 1), 24, dtype=np.int32).tobytes())


def write_table(table: pa.Table, out_dir: Path, stem: str, fmt: str) -> Path:
    """Write one contract table as ``stem.parquet`` or ``stem.csv``."""
    path = out_dir / f"{stem}.{fmt}"
    if fmt == "parquet":
        pq.write_table(table, path, compression="zstd")
    else:
        pacsv.write_csv(_csv_ready(table), path)
    logger.debug("wrote %s (%d rows)", path, table.num_rows)
    return path


def float_lists(matrix: np.ndarray) -> pa.Array:
    """A 2-d float matrix as a ``list<float>`` column, without Python loops."""
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    n, width = matrix.shape
    offsets = pa.array(np.arange(0, n * width + 1, width, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(matrix.ravel()))


def write_json(data: dict[str, Any], path: Path) -> Path:
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return path
