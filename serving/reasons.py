"""A human-readable reason for each recommended item, from the source that proposed it best.

The reason names what the shopper can recognise: the item it goes with, the category they
like, the people and season it is popular with. It is computed for the final few items only.
"""

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix

from recommender.model import Recommender
from recommender.sources.covisit import MATRICES
from recommender.state import ITEM, KIND, REQ, TS, UNKNOWN, Batch
from recsys import columns as c

SEASONS = ("winter", "spring", "summer", "autumn")
# the most specific source that proposed an item explains it; popularity is the last resort
REASON_ORDER = ("repeat", "covisit", "sknn", "als", "content", "popularity")
PROPOSED_WITHIN = 100


def reason_sources(ranked: pd.DataFrame) -> np.ndarray:
    """Per row, the first source of ``REASON_ORDER`` that ranked the item in its top
    ``PROPOSED_WITHIN`` (else the one that ranked it best)."""
    cols = [f"{name}_rank" for name in REASON_ORDER if f"{name}_rank" in ranked]
    if not cols:
        return np.full(len(ranked), "", dtype=object)
    # (column by column: selecting several columns makes a new frame first)
    ranks = np.column_stack([ranked[col].to_numpy(dtype=np.float64) for col in cols])
    names = np.array([col[: -len("_rank")] for col in cols], dtype=object)
    within = ranks <= PROPOSED_WITHIN
    first = np.where(within.any(axis=1), within.argmax(axis=1), ranks.argmin(axis=1))
    return names[first]


DAY = 86_400.0


def _leaf(category: object) -> str:
    if not isinstance(category, str) or not category:
        return "this category"
    return category.split(c.CATEGORY_SEPARATOR)[-1]


def _season(ts: float) -> str:
    month = pd.Timestamp(ts, unit="s", tz="UTC").month
    return SEASONS[(month % 12) // 3]


def _who(demo: object, known: bool) -> str:
    """Who the item is popular with, from the request's demographic segment."""
    demo = str(demo)
    age, _, gender = demo.partition("|")
    words = []
    if age not in (UNKNOWN, "", "nan"):
        words.append(f"aged {age}")
    people = {"F": "women", "M": "men"}.get(gender, "customers")
    base = "new customers" if not known else people
    if not known and people != "customers":
        base = f"new {people}"
    return " ".join([base, *words])


def _summed(covisit) -> csr_matrix:
    """The sum of the co-visitation matrices (``MATRICES``, added in that order), made once
    per set of matrices: a request's anchors then slice one matrix, not three."""
    matrices = tuple(covisit.matrices[name] for name in MATRICES)
    held = _SUMS.get(id(covisit))
    if held is None or any(a is not b for a, b in zip(held[0], matrices, strict=True)):
        total = matrices[0]
        for matrix in matrices[1:]:
            total = total + matrix
        held = (matrices, total.tocsr())
        while len(_SUMS) >= 2:  # the serving model's and the one being loaded beside it
            _SUMS.pop(next(iter(_SUMS)))
        _SUMS[id(covisit)] = held
    return held[1]


_SUMS: dict[int, tuple[tuple, csr_matrix]] = {}


def _anchors(model: Recommender, history: np.ndarray, items: np.ndarray) -> np.ndarray:
    """For each item, the history item most often seen with it (-1 when none)."""
    out = np.full(len(items), -1, dtype=np.int64)
    if not len(history) or not len(items):
        return out
    try:
        covisit = model.source("covisit")
    except StopIteration:
        return out
    n = covisit.matrices["follow"].shape[0]
    hist = history[history < n]
    ok = items < n
    if not len(hist) or not ok.any():
        return out
    dense = _block(_summed(covisit), hist, items[ok])
    best = dense.argmax(axis=0)
    found = dense[best, np.arange(dense.shape[1])] > 0
    out[np.flatnonzero(ok)[found]] = hist[best[found]]
    return out


def _block(matrix: csr_matrix, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """``matrix[rows][:, columns]`` as a dense array, from the rows' stored cells (scipy's
    column selection costs more than the few cells it keeps)."""
    starts, sizes = matrix.indptr[rows], np.diff(matrix.indptr)[rows]
    row = np.repeat(np.arange(len(rows)), sizes)
    cells = np.repeat(starts - np.cumsum(sizes) + sizes, sizes) + np.arange(int(sizes.sum()))
    indices, data = matrix.indices[cells], matrix.data[cells]
    distinct, at = np.unique(columns, return_inverse=True)
    place = np.minimum(np.searchsorted(distinct, indices), len(distinct) - 1)
    hit = distinct[place] == indices
    dense = np.zeros((len(rows), len(distinct)), dtype=matrix.dtype)
    np.add.at(dense, (row[hit], place[hit]), data[hit])
    return dense[:, at.ravel()]


def explain(model: Recommender, batch: Batch, ranked: pd.DataFrame) -> list[str]:
    """One reason per row of ``ranked`` (``req, item, <source>_rank``) of a one-request
    batch (the request's values and events taken as arrays: a frame's row and masks would
    cost more than the reasons)."""
    if not len(ranked):
        return []
    requests = batch.requests
    first = {
        name: requests[name].to_numpy()[0] if name in requests.columns else default
        for name, default in ((TS, None), ("user", -1), ("demo", UNKNOWN), (c.COUNTRY, None))
    }
    ts = float(first[TS])
    events = batch.history
    mine = events[REQ].to_numpy() == 0
    history = events[ITEM].to_numpy()[mine][::-1]
    known = len(history) > 0 or int(first["user"]) >= 0
    items = ranked[ITEM].to_numpy(dtype=np.int64)
    ids = model.catalog.items.ids
    cats = model.catalog.facts[c.CATEGORY].to_numpy(dtype=object)
    created = model.catalog.created
    anchors = _anchors(model, np.unique(history), items)
    bought_rows = batch.bought[REQ].to_numpy() == 0
    bought = set(batch.bought[ITEM].to_numpy()[bought_rows].tolist())
    carted = set(events[ITEM].to_numpy()[mine & (events[KIND].to_numpy() == 1)].tolist())
    country = first[c.COUNTRY]
    where = f" in {country}" if isinstance(country, str) and country not in (UNKNOWN, "") else ""
    who = first["demo"]
    reasons = []
    for item, source, anchor in zip(items, reason_sources(ranked), anchors, strict=True):
        if source == "repeat":
            text = (
                "you bought this before"
                if item in bought
                else "you added this to your basket"
                if item in carted
                else "you viewed this recently"
            )
        elif source == "covisit" and anchor >= 0:
            text = f"often bought with {ids[anchor]}"
        elif source == "sknn":
            text = "viewed in sessions like yours"
        elif source == "content" and ts - created[item] < 30 * DAY:
            text = f"new in {_leaf(cats[item])}, like items you viewed"
        elif source == "content" and len(history):
            text = f"similar to {ids[history[0]]}"
        elif source == "als":
            text = f"picked for your interest in {_leaf(cats[item])}"
        elif source == "popularity" or not known:
            text = f"popular with {_who(who, known)}{where} this {_season(ts)}"
        elif anchor >= 0:
            text = f"often bought with {ids[anchor]}"
        else:
            text = f"recommended from your interest in {_leaf(cats[item])}"
        reasons.append(text)
    return reasons


def similar_reason(model: Recommender, item: int, by: str) -> str:
    ids = model.catalog.items.ids
    if by == "covisit":
        return f"often bought with {ids[item]}"
    return f"similar to {ids[item]}"
