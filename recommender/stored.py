"""Stored features of the ranker (Feast's ``ranker_v1``) in one shape for training and serving.

Training gets them from Feast's point-in-time retrieval, serving from the online store; both
arrive as columns named ``<view>__<feature>`` and go through ``ranker_inputs`` here, which
turns instants into ages and strings into match flags, so the ranker sees the same numbers.
"""

import numpy as np
import pandas as pd

from features import names as n
from features.session import SEPARATOR
from recsys import columns as c

DAY = 86_400.0
LABEL_EPSILON = pd.Timedelta(seconds=1)


def full(view: str, feature: str) -> str:
    return f"{view}__{feature}"


def _overlap(left: pd.Series, right: pd.Series, sep: str) -> np.ndarray:
    out = np.zeros(len(left), dtype=np.float32)
    lv, rv = left.to_numpy(dtype=object), right.to_numpy(dtype=object)
    for i, (a, b) in enumerate(zip(lv, rv, strict=True)):
        if isinstance(a, str) and a and isinstance(b, str) and b:
            out[i] = len(set(a.split(sep)) & set(b.split(sep)))
    return out


def ranker_inputs(stored: pd.DataFrame, item_ids: pd.Series) -> pd.DataFrame:
    """Numbers from stored features: numeric columns as they are, instants as days before
    the request, and string features as flags of the candidate matching the user."""
    now = pd.to_numeric(stored[n.REQUEST_TS], errors="coerce").to_numpy(dtype=np.float64)
    out = {}
    for column in stored.columns:
        if "__" not in column:
            continue
        values = stored[column]
        if column.endswith("_epoch"):
            out[column.replace("_epoch", "_days_ago")] = (
                now - pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
            ) / DAY
        elif pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            out[column] = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)

    def col(view: str, feature: str) -> pd.Series:
        name = full(view, feature)
        return stored[name] if name in stored else pd.Series(None, index=stored.index)

    cat = col(n.PRODUCT_CATALOG, "category").astype(object)
    brand = col(n.PRODUCT_CATALOG, "brand").astype(object)
    out["is_favourite_category"] = (
        (cat == col(n.USER_ACTIVITY, "favourite_category").astype(object)) & cat.notna()
    ).to_numpy(dtype=np.float32)
    out["is_favourite_brand"] = (
        (brand == col(n.USER_ACTIVITY, "favourite_brand").astype(object)) & brand.notna()
    ).to_numpy(dtype=np.float32)
    out["avoided_attributes"] = _overlap(
        col(n.USER_PROFILE, "avoid_attributes"),
        col(n.PRODUCT_CATALOG, "attributes"),
        c.ATTRIBUTE_SEPARATOR,
    )
    session = col(n.SESSION, "session_item_ids").to_numpy(dtype=object)
    ids = item_ids.to_numpy(dtype=object)
    out["in_last_session"] = np.array(
        [isinstance(s, str) and i in s.split(SEPARATOR) for s, i in zip(session, ids, strict=True)],
        dtype=np.float32,
    )
    frame = pd.DataFrame(out, index=stored.index)
    return frame.drop(columns=[n.REQUEST_TS], errors="ignore")
