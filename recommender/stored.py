"""Stored features of the ranker (Feast's ``ranker_v1``) in one shape for training and serving.

Training gets them from Feast's point-in-time retrieval, serving from the online store; both
arrive as columns named ``<view>__<feature>`` and go through ``ranker_inputs`` here, which
turns instants into ages and strings into match flags, so the ranker sees the same numbers.
"""

from collections.abc import Mapping

import numpy as np
import pandas as pd

from features import names as n
from features.session import SEPARATOR
from recsys import columns as c

DAY = 86_400.0
LABEL_EPSILON = pd.Timedelta(seconds=1)
NUMBER_KINDS = frozenset("biufc")  # bool, integer, unsigned, float, complex


def full(view: str, feature: str) -> str:
    return f"{view}__{feature}"


# stored features that are not the ranker's: the instants of the session's first and last
# events. A session given with a request (``session_item_ids``) has no times, only an order
# (serving folds its items in a second apart), so the same clicks told to /feedback would
# rank apart by when they came; the session's events and items remain inputs
NOT_INPUTS = frozenset(
    {full(n.SESSION, "session_start_epoch"), full(n.SESSION, "session_last_epoch")}
)


def _numbers(values: pd.Series | np.ndarray) -> np.ndarray:
    """A column as float64 (anything not a number is NaN)."""
    array = values.to_numpy() if isinstance(values, pd.Series) else values
    if array.dtype.kind in "biuf":
        return array.astype(np.float64)
    if isinstance(values, pd.Series):
        return pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    return np.asarray(pd.to_numeric(values, errors="coerce"), dtype=np.float64)


def _is_number(values: pd.Series | np.ndarray) -> bool:
    """Whether a column holds numbers or flags (pandas' test; a numpy column's own kind,
    which pandas' test comes to at some microseconds a column)."""
    if isinstance(values, np.ndarray):
        return values.dtype.kind in NUMBER_KINDS
    return pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)


def _objects(values: pd.Series | np.ndarray) -> np.ndarray:
    return values.to_numpy(dtype=object) if isinstance(values, pd.Series) else values.astype(object)


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
    the request (but the session's, ``NOT_INPUTS``), and string features as flags of the
    candidate matching the user."""
    return pd.DataFrame(ranker_input_columns(stored, item_ids), index=stored.index)


def ranker_input_columns(
    stored: pd.DataFrame | Mapping[str, np.ndarray], item_ids: pd.Series | np.ndarray
) -> dict[str, np.ndarray]:
    """``ranker_inputs`` as columns (the caller makes one frame of every feature); ``stored``
    may be a frame or its columns (the service's form: no frame to build and take apart)."""
    if isinstance(stored, pd.DataFrame):
        get, names, length = stored.__getitem__, list(stored.columns), len(stored)
    else:
        get, names = stored.__getitem__, list(stored)
        length = len(stored[n.REQUEST_TS])
    now = _numbers(get(n.REQUEST_TS))
    present = set(names)  # (a set: asking a new frame's columns builds their index)
    out = {}
    for column in names:
        if "__" not in column or column in NOT_INPUTS:
            continue
        values = get(column)
        if column.endswith("_epoch"):
            out[column.replace("_epoch", "_days_ago")] = (now - _numbers(values)) / DAY
        elif _is_number(values):
            out[column] = _numbers(values)

    def col(view: str, feature: str) -> np.ndarray | None:
        name = full(view, feature)
        return _objects(get(name)) if name in present else None

    def matches(candidate: np.ndarray | None, favourite: np.ndarray | None) -> np.ndarray:
        out = np.zeros(length, dtype=np.float32)
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
        else np.zeros(length, dtype=np.float32)
    )
    session = col(n.SESSION, "session_item_ids")
    out["in_last_session"] = (
        _contains(session, np.asarray(item_ids, dtype=object), SEPARATOR)
        if session is not None
        else np.zeros(length, dtype=np.float32)
    )
    out.pop(n.REQUEST_TS, None)
    return out


def ranker_frame(columns: Mapping[str, np.ndarray], names: list[str], index) -> pd.DataFrame:
    """The ranker's columns ``names`` of ``columns`` as one float32 block (NaN where one is
    missing): what ``Ranker.matrix`` takes from the frame of every feature, without making
    that frame (some 70 columns, each checked by pandas, cost more than one request's work).
    Each column is cast as ``DataFrame.to_numpy(dtype=np.float32)`` casts it."""
    length = len(index)
    matrix = np.empty((length, len(names)), dtype=np.float32)
    for j, name in enumerate(names):
        matrix[:, j] = columns.get(name, np.nan)
    return pd.DataFrame(matrix, columns=names, index=index, copy=False)
