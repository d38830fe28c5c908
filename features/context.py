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


def season_of(month: pd.Series) -> pd.Series:
    """Meteorological seasons of the northern hemisphere: 0 winter, 1 spring, 2 summer, 3 autumn."""
    return ((month % 12) // 3).astype("int64")


def context_features(inputs: pd.DataFrame) -> pd.DataFrame:
    """The context columns for each row of ``inputs``.

    Expects ``request_ts`` (epoch seconds) and ``request_device``, and, when known, ``price``,
    ``created_epoch`` (the product's) and ``mean_price``, ``last_event_epoch`` (the user's).
    """
    ts = pd.to_numeric(inputs[n.REQUEST_TS], errors="coerce").astype("float64")
    when = pd.to_datetime(ts, unit="s", utc=True)
    out = pd.DataFrame(index=inputs.index)
    out["hour"] = when.dt.hour.fillna(0).astype("int64")
    out["weekday"] = when.dt.weekday.fillna(0).astype("int64")
    out["month"] = when.dt.month.fillna(1).astype("int64")
    out["season"] = season_of(out["month"])
    out["is_weekend"] = (out["weekday"] >= 5).astype("int64")
    device = inputs[n.REQUEST_DEVICE].astype("string").str.lower()
    out["is_mobile"] = device.isin(MOBILE_DEVICES).fillna(False).astype("int64")

    def column(name: str) -> pd.Series:
        if name not in inputs:
            return pd.Series(np.nan, index=inputs.index)
        return pd.to_numeric(inputs[name], errors="coerce").astype("float64")

    mean_price = column("mean_price")
    out["price_vs_user_mean"] = column("price") / mean_price.where(mean_price > 0)
    out["product_age_days"] = (ts - column("created_epoch")) / DAY_SECONDS
    out["days_since_last_event"] = (ts - column("last_event_epoch")) / DAY_SECONDS
    return out[list(CONTEXT_FEATURES)]
