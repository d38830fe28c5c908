"""Request-time context features: one function for Feast's on-demand view and for the service.

Inputs are the request's time and device and a few stored features of the (user, product)
pair; nothing here reads a store, so serving can call it on a frame of candidates directly.
"""

from typing import Final

import numpy as np
import pandas as pd

from features import names as n

CONTEXT_FEATURES: Final = (
    "hour",
    "weekday",
    "month",
    "season",
    "is_weekend",
    "is_mobile",
    "price_vs_user_mean",
    "product_age_days",
    "days_since_last_event",
)
FLOAT_FEATURES: Final = frozenset(
    {"price_vs_user_mean", "product_age_days", "days_since_last_event"}
)
MOBILE_DEVICES: Final = frozenset({"mobile", "tablet"})
DAY_SECONDS: Final = 86_400.0
FEW_INSTANTS: Final = 32  # up to this many distinct instants, one Timestamp each


def season_of(month: pd.Series) -> pd.Series:
    """Meteorological seasons of the northern hemisphere: 0 winter, 1 spring, 2 summer, 3 autumn."""
    return ((month % 12) // 3).astype("int64")


def context_features(inputs: pd.DataFrame) -> pd.DataFrame:
    """The context columns for each row of ``inputs``.

    Expects ``request_ts`` (epoch seconds) and ``request_device``, and, when known, ``price``,
    ``created_epoch`` (the product's) and ``mean_price``, ``last_event_epoch`` (the user's).
    """
    out = context_columns(
        inputs[n.REQUEST_TS],
        inputs[n.REQUEST_DEVICE],
        price=inputs.get("price"),
        created_epoch=inputs.get("created_epoch"),
        mean_price=inputs.get("mean_price"),
        last_event_epoch=inputs.get("last_event_epoch"),
    )
    return pd.DataFrame(out, index=inputs.index)


def numbers(values: object, length: int) -> np.ndarray:
    """Values as float64, NaN where missing or not a number (``None``: all missing)."""
    if values is None:
        return np.full(length, np.nan)
    array = values.to_numpy() if isinstance(values, pd.Series) else np.asarray(values)
    if array.dtype.kind in "biuf":
        return array.astype(np.float64)
    return np.asarray(pd.to_numeric(values, errors="coerce").astype("float64"))


def calendar(ts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hour, weekday and month (UTC) of epoch seconds; 0, 0 and 1 where unknown.

    Worked out once per distinct instant (a request's candidates share one), by pandas: a
    ``Timestamp`` for a few instants, ``to_datetime`` for many (both convert alike)."""
    instants, at = np.unique(ts, return_inverse=True)
    known = ~np.isnan(instants)
    hour = np.zeros(len(instants), dtype=np.int64)
    weekday = np.zeros(len(instants), dtype=np.int64)
    month = np.ones(len(instants), dtype=np.int64)
    if known.sum() <= FEW_INSTANTS:
        for i in np.flatnonzero(known):
            when = pd.Timestamp(instants[i], unit="s", tz="UTC")
            hour[i], weekday[i], month[i] = when.hour, when.weekday(), when.month
    else:
        when = pd.to_datetime(instants[known], unit="s", utc=True)
        hour[known], weekday[known], month[known] = when.hour, when.weekday, when.month
    return hour[at], weekday[at], month[at]


def context_columns(
    request_ts: object,
    request_device: object,
    price: object = None,
    created_epoch: object = None,
    mean_price: object = None,
    last_event_epoch: object = None,
) -> dict[str, np.ndarray]:
    """``context_features`` on columns (arrays or series, ``None`` for unknown), in
    ``CONTEXT_FEATURES`` order, computed with numpy: the service calls it for one request's
    few hundred candidates, where pandas' per-column overhead would cost more than the work.
    """
    devices = np.asarray(request_device, dtype=object)
    ts = numbers(request_ts, len(devices))
    hour, weekday, month = calendar(ts)
    codes, distinct = pd.factorize(devices)  # a missing device: code -1, not mobile
    mobile = [int(str(d).lower() in MOBILE_DEVICES) for d in distinct]
    mean = numbers(mean_price, len(ts))
    return {
        "hour": hour,
        "weekday": weekday,
        "month": month,
        "season": ((month % 12) // 3).astype(np.int64),
        "is_weekend": (weekday >= 5).astype(np.int64),
        "is_mobile": np.asarray([*mobile, 0], dtype=np.int64)[codes],
        "price_vs_user_mean": numbers(price, len(ts)) / np.where(mean > 0, mean, np.nan),
        "product_age_days": (ts - numbers(created_epoch, len(ts))) / DAY_SECONDS,
        "days_since_last_event": (ts - numbers(last_event_epoch, len(ts))) / DAY_SECONDS,
    }
