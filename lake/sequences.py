"""Converter for sequence benchmark files (one line per user: ``user item item ...``).

Public research sets such as the Amazon review sequences ship without timestamps or event
types. The converter writes them as ordinary shop files in the source's own vocabulary
(``reviewerID``, ``asin``, ``unixReviewTime``, ``action=review``); a mapping file then tells
ingestion what those mean, exactly as it would for a real shop's export.
"""

import gzip
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from recsys.errors import DataFileError, RecsysError

logger = logging.getLogger(__name__)

USER, ITEM, TIME, ACTION, ATTRS = "reviewerID", "asin", "unixReviewTime", "action", "attributes"
DAY = 86_400


@dataclass(frozen=True)
class ConvertSummary:
    users: int
    items: int
    events: int
    products: int
    files: tuple[str, ...]


def open_text(path: Path):
    """A text file, gzipped where its name ends in ``.gz``; a missing file is a clear error."""
    if not path.is_file():
        raise DataFileError(path, "file not found")
    return (
        gzip.open(path, "rt", encoding="utf-8")
        if path.suffix == ".gz"
        else path.open(encoding="utf-8")
    )


def read_sequences(path: Path, end: pd.Timestamp, action: str) -> pd.DataFrame:
    """Each user's n-th item one day after the (n-1)-th, the last one on ``end`` for everybody."""
    users, items, times = [], [], []
    end_s = int(end.timestamp())
    try:
        with open_text(path) as handle:
            for number, line in enumerate(handle, start=1):
                tokens = line.split()
                if not tokens:
                    continue
                if len(tokens) < 2:
                    raise DataFileError(
                        path,
                        f"line {number} has a user but no items",
                        expected="'user item item ...'",
                    )
                user, seq = tokens[0], tokens[1:]
                n = len(seq)
                users.extend([user] * n)
                items.extend(seq)
                times.extend(end_s - (n - 1 - k) * DAY for k in range(n))
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise DataFileError(path, f"cannot be read as text ({exc})") from None
    if not users:
        raise DataFileError(path, "no sequences found", expected="'user item item ...' lines")
    return pd.DataFrame({USER: users, ITEM: items, TIME: times, ACTION: action})


def read_attributes(path: Path) -> pd.DataFrame:
    try:
        with open_text(path) as handle:
            data = json.load(handle)
    except (OSError, UnicodeDecodeError, EOFError, json.JSONDecodeError) as exc:
        raise DataFileError(path, f"not a JSON object of item -> attribute ids ({exc})") from None
    if not isinstance(data, dict):
        raise DataFileError(path, "expected a JSON object {item_id: [attribute, ...]}")
    rows = []
    for item, attrs in data.items():
        if not isinstance(attrs, list):
            raise DataFileError(path, f"item {item!r}: attributes are not a list")
        rows.append((str(item), ";".join(f"attr_{a}" for a in attrs)))
    return pd.DataFrame(rows, columns=[ITEM, ATTRS]).sort_values(ITEM, kind="stable")


def convert_sequences(
    sequences: str | Path,
    out: str | Path,
    attributes: str | Path | None = None,
    end: str = "2020-01-01",
    action: str = "review",
) -> ConvertSummary:
    """Write ``events.csv`` (and ``products.csv`` from the attribute file) into ``out``."""
    try:
        end_at = pd.Timestamp(end, tz="UTC")
    except ValueError:
        raise RecsysError(f"--end {end!r} is not a date (expected YYYY-MM-DD)") from None
    events = read_sequences(Path(sequences), end_at, action)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [out_dir / "events.csv"]
    events.to_csv(files[0], index=False)
    n_products = 0
    if attributes is not None:
        products = read_attributes(Path(attributes))
        files.append(out_dir / "products.csv")
        products.to_csv(files[1], index=False)
        n_products = len(products)
    logger.info(
        "wrote %s events of %s users to %s",
        f"{len(events):,}",
        f"{events[USER].nunique():,}",
        out_dir,
    )
    return ConvertSummary(
        users=int(events[USER].nunique()),
        items=int(events[ITEM].nunique()),
        events=len(events),
        products=n_products,
        files=tuple(str(f) for f in files),
    )
