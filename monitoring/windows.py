"""Time windows and the rows monitoring reads in them: lake events and served responses.

A window is ``FROM..TO`` (dates or instants, UTC when naive; ``TO`` excluded), so the same
spelling works on the command line, in the thresholds file and in the reports.
"""

import logging
from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from recsys import columns as c
from recsys.errors import RecsysError
from recsys.workspace import Workspace

logger = logging.getLogger(__name__)
SEPARATOR = ".."
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Window:
    """``[start, end)`` in UTC."""

    start: pd.Timestamp
    end: pd.Timestamp

    @property
    def label(self) -> str:
        whole_days = self.start == self.start.normalize() and self.end == self.end.normalize()
        spelling = "%Y-%m-%d" if whole_days else "%Y-%m-%dT%H:%M"
        return f"{self.start.strftime(spelling)}..{self.end.strftime(spelling)}"

    def mask(self, stamps: pd.Series) -> pd.Series:
        return (stamps >= self.start) & (stamps < self.end)

    def to_dict(self) -> dict[str, str]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat()}


def _instant(text: str, spec: str) -> pd.Timestamp:
    try:
        stamp = pd.Timestamp(text.strip())
    except (ValueError, TypeError):
        raise RecsysError(f"window {spec!r}: {text!r} is not a date or instant") from None
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def parse_window(spec: str) -> Window:
    """``2025-04-01..2025-06-01`` -> Window; the end must come after the start."""
    if not isinstance(spec, str) or spec.count(SEPARATOR) != 1:
        raise RecsysError(f"window {spec!r}: expected FROM..TO, e.g. 2025-04-01..2025-06-01")
    start, end = (_instant(part, spec) for part in spec.split(SEPARATOR))
    if end <= start:
        raise RecsysError(f"window {spec!r}: the end must come after the start")
    return Window(start, end)


def last_days(end: pd.Timestamp, days: int) -> Window:
    """The ``days`` days before midnight after ``end``."""
    stop = (end.tz_convert("UTC") + pd.Timedelta(days=1)).normalize()
    return Window(stop - pd.Timedelta(days=days), stop)


@dataclass(frozen=True)
class Lake:
    """The lake's events with each item's catalogue facts (department, category, price)."""

    events: pd.DataFrame
    products: pd.DataFrame

    @property
    def catalogue_size(self) -> int:
        return max(int(self.products[c.ITEM_ID].nunique()), int(self.events[c.ITEM_ID].nunique()))

    def last(self, days: int) -> pd.DataFrame:
        """The lake's last ``days`` days of events."""
        return self.window(last_days(self.events[c.TIMESTAMP].max(), days))

    def window(self, window: Window) -> pd.DataFrame:
        return self.events[window.mask(self.events[c.TIMESTAMP])].reset_index(drop=True)


def category_facts(products: pd.DataFrame) -> pd.DataFrame:
    """item_id -> department (the category path's first level), category, catalogue price and
    launch time (``created_at``, NaT when unknown)."""
    if products.empty or c.CATEGORY not in products:
        return pd.DataFrame(
            columns=[c.ITEM_ID, "department", "category", "list_price", c.CREATED_AT]
        )
    category = products[c.CATEGORY].astype("string").fillna(UNKNOWN).str.strip()
    category = category.mask(category == "", UNKNOWN)
    return pd.DataFrame(
        {
            c.ITEM_ID: products[c.ITEM_ID].astype(str),
            "department": category.str.split(">").str[0].str.strip(),
            "category": category,
            "list_price": pd.to_numeric(products.get(c.PRICE), errors="coerce"),
            c.CREATED_AT: pd.to_datetime(products.get(c.CREATED_AT), utc=True, errors="coerce"),
        }
    ).drop_duplicates(c.ITEM_ID, keep="last")


def load_lake(workspace: Workspace) -> Lake:
    """The curated events and products of the workspace's lake (``recsys ingest``)."""
    path = workspace.table("events")
    if not path.exists():
        raise RecsysError(f"no lake at {workspace.lake}: run `recsys ingest DIR` first")
    events = pd.read_parquet(path)
    products_path = workspace.table("products")
    products = pd.read_parquet(products_path) if products_path.exists() else pd.DataFrame()
    facts = category_facts(products)
    events[c.ITEM_ID] = events[c.ITEM_ID].astype(str)
    events = events.merge(facts, on=c.ITEM_ID, how="left")
    for column in ("department", "category"):
        events[column] = events[column].fillna(UNKNOWN)
    logger.info("lake: %d events, %d products", len(events), len(products))
    return Lake(events=events, products=facts)


def since(stamp: pd.Timestamp) -> datetime:
    """A window bound as the aware datetime FeedbackLog.served() and events() take."""
    return stamp.tz_convert("UTC").to_pydatetime()
