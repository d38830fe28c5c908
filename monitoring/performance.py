"""Online performance: what users did with the served lists, from the feedback log.

Definitions (docs/runbook.md repeats them for operators):

- a **request** is one answer the service logged (``served_requests``), in the window by its
  ``served_at``; its model version, variant and day (UTC) are the served answer's;
- a feedback event is **attributed** to a request by its ``request_id``; events without one,
  or naming a request not served in the window, are counted as ``unattributed`` and left out;
- ``impressions``, ``clicks``, ``carts``, ``purchases``: attributed events of that type (the
  client reports what was on screen as ``impression`` events);
- ``ctr`` = clicks / impressions; ``conversion`` = purchases / impressions (None when there
  was no impression); ``revenue`` = the attributed purchases' ``price`` (the catalogue price
  when the event has none); ``revenue_per_request`` = revenue / requests;
- **segments** are offline evaluation's (recommender.segments.segment_labels): the user's events
  in the lake before the request decide new, light, regular or heavy users; ``new_products``
  counts the events on products launched at most ``new_days`` (30) before the event; its
  requests are the requests with such an event.
"""

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from monitoring.windows import Lake, Window
from recsys import columns as c
from recsys.errors import RecsysError

logger = logging.getLogger(__name__)
EVENT_TYPES = ("impression", "click", "cart", "purchase")
COUNTS = ("impressions", "clicks", "carts", "purchases")
FIGURES = ("requests", *COUNTS, "revenue", "ctr", "conversion", "revenue_per_request")
NO_VERSION = "unknown"


@dataclass
class Performance:
    window: Window
    overall: dict[str, Any]
    by_version: pd.DataFrame
    by_day: pd.DataFrame
    by_segment: pd.DataFrame
    unattributed_events: int

    def to_dict(self) -> dict[str, Any]:
        def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
            return [_clean(row) for row in frame.to_dict(orient="records")]

        return {
            "window": self.window.to_dict(),
            "overall": _clean(self.overall),
            "by_version": records(self.by_version),
            "by_day": records(self.by_day),
            "by_segment": records(self.by_segment),
            "unattributed_events": self.unattributed_events,
        }

    def markdown(self) -> str:
        parts = [
            f"Online performance, {self.window.label} "
            f"({self.overall['requests']:,} requests, {self.unattributed_events:,} "
            "unattributed events)",
            "",
            "By model version:",
            _table(self.by_version),
            "",
            "By day and model version:",
            _table(self.by_day),
            "",
            "By segment and model version:",
            _table(self.by_segment),
        ]
        return "\n".join(parts)


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in row.items():
        if isinstance(value, float | np.floating):
            out[key] = None if np.isnan(value) else float(value)
        elif isinstance(value, np.integer):
            out[key] = int(value)
        else:
            out[key] = value
    return out


def _table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "(none)"
    return frame.to_markdown(index=False, floatfmt=".4f")


def _figures(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Sum the per-request counts by ``keys`` and derive the rates."""
    sums = frame.groupby(keys, sort=True, dropna=False)[["requests", *COUNTS, "revenue"]].sum()
    sums = sums.reset_index()
    impressions = sums["impressions"].where(sums["impressions"] > 0)
    sums["ctr"] = sums["clicks"] / impressions
    sums["conversion"] = sums["purchases"] / impressions
    sums["revenue_per_request"] = sums["revenue"] / sums["requests"]
    return sums[[*keys, *FIGURES]]


def past_events(lake: Lake, users: pd.Series, at: pd.Series) -> np.ndarray:
    """How many lake events each (user, instant) pair had strictly before the instant."""
    events = lake.events
    codes, uniques = pd.factorize(events[c.USER_ID].astype(str))
    seconds = events[c.TIMESTAMP].astype("int64").to_numpy() // 10**9
    keys = np.sort(codes.astype(np.int64) * 2**32 + seconds)
    lookup = pd.Index(uniques)
    user_codes = lookup.get_indexer(users.astype(str))
    at_seconds = pd.to_datetime(at, utc=True).astype("int64").to_numpy() // 10**9
    base = user_codes.astype(np.int64) * 2**32
    counts = np.searchsorted(keys, base + at_seconds, "left") - np.searchsorted(keys, base, "left")
    return np.where(user_codes >= 0, counts, 0)


def online_performance(
    served: pd.DataFrame,
    events: pd.DataFrame,
    window: Window,
    lake: Lake | None = None,
    new_days: float | None = None,
) -> Performance:
    """The figures of ``window``: ``served`` and ``events`` are FeedbackLog.served() and
    FeedbackLog.events() (or frames with their columns); ``lake`` labels the segments."""
    from recommender.config import ContentConfig
    from recommender.segments import segment_labels

    new_days = ContentConfig().new_days if new_days is None else new_days
    served = served[window.mask(served["served_at"])].copy()
    if served.empty:
        raise RecsysError(f"the service logged no answer in {window.label}")
    served["model_version"] = served["model_version"].fillna(NO_VERSION).astype(str)
    served["variant"] = served["variant"].fillna(NO_VERSION).astype(str)
    served["day"] = served["served_at"].dt.strftime("%Y-%m-%d")
    served["requests"] = 1

    known = events["event_type"].isin(EVENT_TYPES)
    attributed = events[known & events["request_id"].isin(served["request_id"])].copy()
    unattributed = int(known.sum() - len(attributed))
    price = pd.to_numeric(attributed["price"], errors="coerce")
    if lake is not None and price.isna().any():
        catalogue = lake.products.set_index(c.ITEM_ID)["list_price"]
        price = price.fillna(attributed[c.ITEM_ID].astype(str).map(catalogue))
    attributed["revenue"] = np.where(
        attributed["event_type"] == "purchase", price.fillna(0.0).to_numpy(), 0.0
    )
    for name, event_type in zip(COUNTS, EVENT_TYPES, strict=True):
        attributed[name] = (attributed["event_type"] == event_type).astype(np.int64)

    per_request = attributed.groupby("request_id")[[*COUNTS, "revenue"]].sum()
    requests = served.join(per_request, on="request_id")
    requests[list(COUNTS)] = requests[list(COUNTS)].fillna(0).astype(np.int64)
    requests["revenue"] = requests["revenue"].fillna(0.0)

    by_version = _figures(requests, ["model_version", "variant"])
    by_day = _figures(requests, ["day", "model_version"])
    totals = _figures(requests.assign(all="all"), ["all"])
    overall = {name: totals[name].iloc[0] for name in FIGURES}

    segment_frames = []
    if lake is not None:
        n_past = past_events(lake, requests["user_id"].fillna(""), requests["served_at"])
        unknown = requests["user_id"].isna().to_numpy()
        requests["segment"] = segment_labels(n_past, unknown)
        segment_frames.append(_figures(requests, ["segment", "model_version"]))
        segment_frames.append(
            _new_products(attributed, requests, lake, new_days).pipe(
                _figures, ["segment", "model_version"]
            )
        )
    by_segment = (
        pd.concat([f for f in segment_frames if not f.empty], ignore_index=True)
        if any(not f.empty for f in segment_frames)
        else pd.DataFrame(columns=["segment", "model_version", *FIGURES])
    )
    logger.info(
        "%d requests, %d attributed events, %d unattributed",
        len(requests),
        len(attributed),
        unattributed,
    )
    return Performance(window, overall, by_version, by_day, by_segment, unattributed)


def _new_products(
    attributed: pd.DataFrame, requests: pd.DataFrame, lake: Lake, new_days: float
) -> pd.DataFrame:
    """Per request, the counts of events on products that were new at the event: the
    ``new_products`` segment (its requests: those with an event on a new product)."""
    launched = lake.products.set_index(c.ITEM_ID)[c.CREATED_AT]
    created = attributed[c.ITEM_ID].astype(str).map(launched)
    age_days = (attributed["event_ts"] - pd.to_datetime(created, utc=True)).dt.total_seconds()
    age_days = age_days / 86_400
    new = attributed[(age_days >= 0) & (age_days <= new_days)]
    if new.empty:
        return pd.DataFrame(columns=["segment", "model_version", "requests", *COUNTS, "revenue"])
    per_request = new.groupby("request_id")[[*COUNTS, "revenue"]].sum()
    frame = requests[["request_id", "model_version"]]
    frame = frame.join(per_request, on="request_id", how="inner")
    return frame.assign(segment="new_products", requests=1)
