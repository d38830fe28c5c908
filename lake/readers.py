"""Reading a shop's files, CSV or Parquet, without losing a row or guessing silently.

Every value of a CSV is read as text so that a wrong type becomes a quarantined row later,
not a failed run; rows a CSV parser cannot split are kept as ``malformed_row`` records.
"""

import csv
import gzip
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from lake.parse import TEXT
from recsys.columns import SOURCE_FILE, SOURCE_ROW, TABLES
from recsys.errors import DataFileError, RecsysError

logger = logging.getLogger(__name__)

CSV_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")
SNIFF_BYTES = 1 << 16
_ARROW_TEXT = {pa.string(): TEXT, pa.large_string(): TEXT}


@dataclass
class RawTable:
    """One contract table as read: source columns (renamed), plus where each row came from."""

    name: str
    frame: pd.DataFrame
    files: list[str]
    malformed: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def rows_in(self) -> int:
        return len(self.frame) + len(self.malformed)


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in CSV_SUFFIXES + PARQUET_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return ""


def discover(folder: Path, files: dict[str, str]) -> tuple[dict[str, list[Path]], list[str]]:
    """Find each table's file(s) in ``folder``: ``events.csv``, ``events.parquet`` or ``events/``.

    Returns the files per table and the paths that were ignored, so the report can name them.
    """
    if not folder.is_dir():
        raise RecsysError(f"{folder}: not a directory (expected a folder of CSV or Parquet files)")
    found: dict[str, list[Path]] = {}
    used: set[Path] = set()
    for table in TABLES:
        if table in files:
            path = folder / files[table]
            if not path.exists():
                raise RecsysError(
                    f"{path}: file named for table '{table}' in the mapping not found"
                )
            candidates = [path]
        else:
            candidates = [
                p
                for p in sorted(folder.iterdir())
                if (p.is_dir() and p.name == table)
                or (p.is_file() and _suffix(p) and p.name[: -len(_suffix(p))] == table)
            ]
        if len(candidates) > 1:
            names = ", ".join(p.name for p in candidates)
            raise RecsysError(f"{folder}: several files for table '{table}': {names}; keep one")
        if not candidates:
            continue
        chosen = candidates[0]
        used.add(chosen)
        if chosen.is_dir():
            parts = sorted(p for p in chosen.rglob("*") if p.is_file() and _suffix(p))
            if not parts:
                raise RecsysError(
                    f"{chosen}: folder for table '{table}' holds no CSV or Parquet file"
                )
            found[table] = parts
        else:
            found[table] = [chosen]
    ignored = sorted(p.name for p in folder.iterdir() if p not in used)
    return found, ignored


def _open_text_head(path: Path) -> bytes:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            return handle.read(SNIFF_BYTES)
    except (OSError, EOFError) as exc:
        raise DataFileError(path, f"cannot be read ({exc})") from None


def _csv_header(path: Path, delimiter: str) -> list[str]:
    head = _open_text_head(path)
    if not head.strip():
        raise DataFileError(path, "file is empty", expected="a header row naming the columns")
    if b"\x00" in head:
        raise DataFileError(path, "not a CSV file (binary content)", expected="UTF-8 text")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not merely a character cut at the sniff boundary
            raise DataFileError(
                path, f"not UTF-8 text (byte {exc.start})", expected="a UTF-8 CSV file"
            ) from None
        text = head[: exc.start].decode("utf-8")
    first = next(csv.reader(io.StringIO(text.lstrip("\ufeff")), delimiter=delimiter), [])
    header = [name.strip() for name in first]
    if not any(header):
        raise DataFileError(path, "first line is not a header row", expected="column names")
    blank = [i + 1 for i, name in enumerate(header) if not name]
    if blank:
        raise DataFileError(path, f"header has unnamed column(s) at position(s) {blank}")
    repeated = sorted({n for n in header if header.count(n) > 1})
    if repeated:
        raise DataFileError(path, f"header repeats column(s) {repeated}")
    return header


def read_csv(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """All columns as text (empty -> null), plus the records the parser could not split."""
    delimiter = "\t" if ".tsv" in path.name.lower() else ","
    header = _csv_header(path, delimiter)
    malformed: list[tuple[int | None, str]] = []

    def keep_bad_row(row: pacsv.InvalidRow) -> str:
        malformed.append((None if row.number is None else row.number - 1, row.text))
        return "skip"

    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(use_threads=False, block_size=1 << 24),
            parse_options=pacsv.ParseOptions(
                delimiter=delimiter, newlines_in_values=True, invalid_row_handler=keep_bad_row
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in header},
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
            ),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise DataFileError(path, f"not a readable CSV file ({exc})") from None
    frame = table.to_pandas(types_mapper=_ARROW_TEXT.get)
    bad_rows = {n for n, _ in malformed if n is not None}
    total = len(frame) + len(malformed)
    rows = (
        np.array([r for r in range(1, total + 1) if r not in bad_rows])
        if bad_rows
        else (np.arange(1, len(frame) + 1))
    )
    frame.columns = [c.strip() for c in frame.columns]
    frame[SOURCE_ROW] = rows[: len(frame)]
    bad = pd.DataFrame(malformed, columns=[SOURCE_ROW, "raw_line"])
    return frame, bad


def read_parquet(path: Path) -> pd.DataFrame:
    """The file's columns with their own types; conversion and checks come later."""
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataFileError(path, f"not a readable Parquet file ({exc})") from None
    frame = table.to_pandas(types_mapper=_ARROW_TEXT.get)
    for name in frame.columns:
        if isinstance(frame[name].dtype, pd.CategoricalDtype):
            frame[name] = frame[name].astype(object)
    frame[SOURCE_ROW] = np.arange(1, len(frame) + 1)
    return frame


def _require(
    path: Path, frame: pd.DataFrame, required: tuple[str, ...], columns: dict[str, str]
) -> None:
    for column in required:
        if column not in frame.columns:
            found = ", ".join(col for col in frame.columns if col != SOURCE_ROW)
            hint = "; rename source columns with a mapping file" if not columns else ""
            raise DataFileError(
                path,
                f"missing required column (found: {found or 'none'})",
                column=column,
                expected=f"columns {', '.join(required)}{hint}",
            )


def read_table(
    name: str, paths: list[Path], columns: dict[str, str], required: tuple[str, ...], folder: Path
) -> RawTable:
    """Read and concatenate one table's files, renaming source columns to contract names.

    A file without a required column stops the run: none of its rows could be used.
    """
    frames, bad_frames = [], []
    for path in paths:
        logger.info("reading %s", path)
        if _suffix(path) in PARQUET_SUFFIXES:
            frame, bad = read_parquet(path), pd.DataFrame()
        else:
            frame, bad = read_csv(path)
        frame = frame.rename(columns=columns)
        duplicated = sorted({c for c in frame.columns if list(frame.columns).count(c) > 1})
        if duplicated:
            raise DataFileError(path, f"after the mapping, column(s) {duplicated} appear twice")
        _require(path, frame, required, columns)
        frame[SOURCE_FILE] = str(path.relative_to(folder))
        frames.append(frame)
        if len(bad):
            bad[SOURCE_FILE] = frame[SOURCE_FILE].iloc[0] if len(frame) else path.name
            bad_frames.append(bad)
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    malformed = pd.concat(bad_frames, ignore_index=True) if bad_frames else pd.DataFrame()
    return RawTable(name=name, frame=frame, files=[str(p) for p in paths], malformed=malformed)
