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


def _numbers(values: pd.Series) -> np.ndarray:
    """A column as float64 (anything not a number is NaN)."""
    array = values.to_numpy()
    if array.dtype.kind in "biuf":
        return array.astype(np.float64)
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)


def _overlap(left: np.ndarray, right: np.ndarray, sep: str) -> np.ndarray:
    """Per row, how many ``sep``-separated words the two strings share (0 unless both are
    non-empty strings), worked out once per distinct pair of strings (a request's user has
    one string, its candidates a few hundred)."""
    out = np.zeros(len(left), dtype=np.float32)
    left_code, lefts = pd.factorize(left)
    right_code, rights = pd.factorize(right)
    known = (left_code >= 0) & (right_code >= 0)  # (missing: no overlap)
    pairs, where = np.unique(
        left_code[known] * len(rights) + right_code[known], return_inverse=True
    )
    shared = np.zeros(len(pairs), dtype=np.float32)
    for k, pair in enumerate(pairs):
        a, b = lefts[pair // len(rights)], rights[pair % len(rights)]
        if isinstance(a, str) and a and isinstance(b, str) and b:
            shared[k] = len(set(a.split(sep)) & set(b.split(sep)))
    out[known] = shared[where.ravel()]
    return out


def _contains(lists: np.ndarray, items: np.ndarray, sep: str) -> np.ndarray:
    """Per row, whether the item is one of the ``sep``-separated ids of the string, each
    distinct string split once."""
    out = np.zeros(len(lists), dtype=np.float32)
    codes, strings = pd.factorize(lists)
    for k, string in enumerate(strings):
        if isinstance(string, str):
            rows = np.flatnonzero(codes == k)
            out[rows] = np.isin(items[rows], string.split(sep))
    return out


def ranker_inputs(stored: pd.DataFrame, item_ids: pd.Series) -> pd.DataFrame:
    """Numbers from stored features: numeric columns as they are, instants as days before
    the request, and string features as flags of the candidate matching the user."""
    return pd.DataFrame(ranker_input_columns(stored, item_ids), index=stored.index)


def ranker_input_columns(stored: pd.DataFrame, item_ids: pd.Series) -> dict[str, np.ndarray]:
    """``ranker_inputs`` as columns (the caller makes one frame of every feature)."""
    now = _numbers(stored[n.REQUEST_TS])
    present = set(stored.columns)  # (a set: asking a new frame's columns builds their index)
    out = {}
    for column in stored.columns:
        if "__" not in column:
            continue
        values = stored[column]
        if column.endswith("_epoch"):
            out[column.replace("_epoch", "_days_ago")] = (now - _numbers(values)) / DAY
        elif pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            out[column] = _numbers(values)

    def col(view: str, feature: str) -> np.ndarray | None:
        name = full(view, feature)
        return stored[name].to_numpy(dtype=object) if name in present else None

    def matches(candidate: np.ndarray | None, favourite: np.ndarray | None) -> np.ndarray:
        out = np.zeros(len(stored), dtype=np.float32)
        if candidate is None or favourite is None:  # a missing side never matches
            return out
        both = ~pd.isna(candidate) & ~pd.isna(favourite)
        out[both] = candidate[both] == favourite[both]
        return out

    out["is_favourite_category"] = matches(
        col(n.PRODUCT_CATALOG, "category"), col(n.USER_ACTIVITY, "favourite_category")
    )
    out["is_favourite_brand"] = matches(
        col(n.PRODUCT_CATALOG, "brand"), col(n.USER_ACTIVITY, "favourite_brand")
    )
    avoid, attributes = (
        col(n.USER_PROFILE, "avoid_attributes"),
        col(n.PRODUCT_CATALOG, "attributes"),
    )
    out["avoided_attributes"] = (
        _overlap(avoid, attributes, c.ATTRIBUTE_SEPARATOR)
        if avoid is not None and attributes is not None
        else np.zeros(len(stored), dtype=np.float32)
    )
    session = col(n.SESSION, "session_item_ids")
    out["in_last_session"] = (
        _contains(session, item_ids.to_numpy(dtype=object), SEPARATOR)
        if session is not None
        else np.zeros(len(stored), dtype=np.float32)
    )
    out.pop(n.REQUEST_TS, None)
    return out
