"""What is known about each request when it is answered: who, when, where, and what came before.

Training builds it from the event log strictly before each request; serving builds it from the
histories stored in the model plus the live session. Sources only ever see a ``Batch``.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from recommender.catalog import Catalog, Vocabulary
from recommender.config import EventWeights
from recsys import columns as c

REQ = "req"
ITEM = "item"
TS = "ts"  # epoch seconds
WEIGHT = "weight"
KIND = "kind"  # 0 view, 1 cart, 2 purchase
KINDS = {c.VIEW: 0, c.CART: 1, c.PURCHASE: 2}
PURCHASED = KINDS[c.PURCHASE]
SEGMENTS = (c.COUNTRY, "demo", c.DEVICE)  # what popularity is broken down by
UNKNOWN = "?"


def epoch(stamps: pd.Series) -> np.ndarray:
    return (
        (pd.to_datetime(stamps, utc=True) - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy()
    )


def age_band(age: pd.Series) -> pd.Series:
    bands = pd.cut(
        pd.to_numeric(age, errors="coerce"),
        bins=[0, 25, 35, 45, 55, 200],
        right=False,
        labels=["<25", "25-34", "35-44", "45-54", "55+"],
    )
    return bands.astype(object).where(bands.notna(), UNKNOWN)


def demo_segment(age: pd.Series, gender: pd.Series) -> pd.Series:
    """Age band and gender in one label, the grain of demographic popularity."""
    g = gender.astype(object).where(gender.notna(), UNKNOWN).astype(str)
    return age_band(age).astype(str) + "|" + g.to_numpy()


@dataclass
class Batch:
    """A batch of requests and each request's recent past.

    ``requests``: one row per request, ``req`` = 0..R-1, with ``user_id``, ``user`` (row in the
    model's user vocabulary, -1 when unknown), ``ts``, and the segment columns.
    ``history``: the request's last events (``req, item, ts, kind, weight``), oldest first.
    ``bought``: every item the user purchased before the request (``req, item``).
    """

    requests: pd.DataFrame
    history: pd.DataFrame
    bought: pd.DataFrame
    touched: pd.DataFrame | None = None  # every distinct item of the past (req, item)

    def __len__(self) -> int:
        return len(self.requests)

    def chunks(self, size: int):
        """Consecutive sub-batches of at most ``size`` requests, renumbered from 0."""
        for start in range(0, len(self), size):
            stop = min(start + size, len(self))
            yield start, self.subset(np.arange(start, stop))

    def subset(self, reqs: np.ndarray) -> "Batch":
        mapping = pd.Series(np.arange(len(reqs)), index=reqs)

        def pick(frame: pd.DataFrame) -> pd.DataFrame:
            part = frame[frame[REQ].isin(reqs)].copy()
            part[REQ] = mapping.loc[part[REQ].to_numpy()].to_numpy()
            return part.reset_index(drop=True)

        touched = pick(self.touched) if self.touched is not None else None
        return Batch(pick(self.requests), pick(self.history), pick(self.bought), touched)


def event_frame(events: pd.DataFrame, catalog: Catalog, weights: EventWeights) -> pd.DataFrame:
    """The event log in the model's terms: item rows, epoch seconds, kind and weight."""
    kind = events[c.EVENT_TYPE].map(KINDS)
    keep = kind.notna().to_numpy()
    ev = events[keep]
    out = pd.DataFrame(
        {
            c.USER_ID: ev[c.USER_ID].astype(str).to_numpy(),
            ITEM: catalog.items.rows(ev[c.ITEM_ID].astype(str)),
            TS: epoch(ev[c.TIMESTAMP]),
            KIND: kind[keep].astype(np.int8).to_numpy(),
        }
    )
    out[WEIGHT] = np.select(
        [out[KIND] == 0, out[KIND] == 1, out[KIND] == 2],
        [weights.view, weights.cart, weights.purchase],
    ).astype(np.float32)
    if c.SESSION_ID in ev:
        out[c.SESSION_ID] = ev[c.SESSION_ID].astype(str).to_numpy()
    if c.DEVICE in ev:
        out[c.DEVICE] = ev[c.DEVICE].astype(object).to_numpy()
    if c.COUNTRY in ev:
        out[c.COUNTRY] = ev[c.COUNTRY].astype(object).to_numpy()
    return out.sort_values([c.USER_ID, TS], kind="stable").reset_index(drop=True)


def user_segments(users: pd.DataFrame) -> pd.DataFrame:
    """Per user: country and demographic segment, from the users table when there is one."""
    frame = (
        pd.DataFrame({c.USER_ID: users[c.USER_ID].astype(str)})
        if c.USER_ID in users
        else (pd.DataFrame({c.USER_ID: pd.Series([], dtype=str)}))
    )
    age = users[c.AGE] if c.AGE in users else pd.Series(np.nan, index=users.index)
    gender = users[c.GENDER] if c.GENDER in users else pd.Series(None, index=users.index)
    country = users[c.COUNTRY] if c.COUNTRY in users else pd.Series(None, index=users.index)
    frame["demo"] = demo_segment(age, gender).to_numpy()
    frame["user_country"] = country.astype(object).to_numpy()
    return frame


def batch_from_events(
    requests: pd.DataFrame,
    events: pd.DataFrame,
    users: pd.DataFrame,
    user_vocab: Vocabulary,
    history_items: int,
) -> Batch:
    """Requests (``user_id, ts`` and optional ``device``, ``country``) with their past.

    ``events`` is an ``event_frame``; only events strictly before each request's instant are
    used, so a request never sees its own outcome.
    """
    reqs = requests.reset_index(drop=True).copy()
    reqs[REQ] = np.arange(len(reqs))
    reqs["user"] = user_vocab.rows(reqs[c.USER_ID].astype(str))
    past = events.merge(reqs[[REQ, c.USER_ID, TS]].rename(columns={TS: "_at"}), on=c.USER_ID)
    past = past[past[TS] < past["_at"]]
    past = past.sort_values([REQ, TS], kind="stable")
    bought = past.loc[past[KIND] == PURCHASED, [REQ, ITEM]].drop_duplicates()
    history = past.groupby(REQ, sort=False).tail(history_items)[[REQ, ITEM, TS, KIND, WEIGHT]]
    # the request's own device/country if given, else the user's last known ones
    last = past.groupby(REQ).tail(1).set_index(REQ)
    for column in (c.DEVICE, c.COUNTRY):
        given = reqs[column] if column in reqs else pd.Series(None, index=reqs.index)
        known = reqs[REQ].map(last[column]) if column in last else given
        reqs[column] = given.astype(object).where(given.notna(), known)
    reqs = attach_segments(reqs, user_segments(users))
    touched = past[[REQ, ITEM]].drop_duplicates().reset_index(drop=True)
    return Batch(reqs, history.reset_index(drop=True), bought.reset_index(drop=True), touched)


def attach_segments(reqs: pd.DataFrame, segments: pd.DataFrame) -> pd.DataFrame:
    """Fill ``demo`` and ``country`` of each request (the user's profile fills a missing one)."""
    merged = reqs.drop(columns=["demo"], errors="ignore").merge(segments, on=c.USER_ID, how="left")
    country = merged[c.COUNTRY].astype(object)
    merged[c.COUNTRY] = country.where(country.notna(), merged["user_country"])
    merged = merged.drop(columns=["user_country"])
    for column in SEGMENTS:
        merged[column] = merged[column].astype(object).where(merged[column].notna(), UNKNOWN)
    return merged.sort_values(REQ).reset_index(drop=True)


def rows_of(sorted_keys: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Positions of every row whose key is one of ``wanted``, in a frame sorted by key: the
    few users of a request are found in a stored past of millions of rows in microseconds."""
    wanted = np.asarray(wanted, dtype=object)
    left = np.searchsorted(sorted_keys, wanted, side="left")
    right = np.searchsorted(sorted_keys, wanted, side="right")
    lengths = right - left
    if lengths.sum() == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.repeat(left - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    return starts + np.arange(lengths.sum())


def availability(batch: Batch, catalog: Catalog, allow_rebuy: bool) -> "Exclusions":
    return Exclusions(batch, catalog, allow_rebuy)


class Exclusions:
    """What a request may not be shown: items not launched yet, and (by policy) rebuys."""

    def __init__(
        self,
        batch: Batch,
        catalog: Catalog,
        allow_rebuy: bool,
        allowed: np.ndarray | None = None,
    ) -> None:
        """``allowed``: the items business rules leave to every request of the batch (the
        service's filters); ``None`` leaves all."""
        self.ts = batch.requests[TS].to_numpy(dtype=np.float64)
        self.created = catalog.created
        self.bought = batch.bought if not allow_rebuy else batch.bought.iloc[0:0]
        self.allowed = allowed

    def restrict(self, scores):
        """Zero the scores of items the rules forbid (a dense vector or a sparse block), so a
        source's own top list is drawn from allowed items only and never starves."""
        if self.allowed is None:
            return scores
        n_items = scores.shape[-1]
        keep = np.zeros(n_items, dtype=bool)
        upto = min(n_items, len(self.allowed))
        keep[:upto] = self.allowed[:upto]
        if isinstance(scores, np.ndarray):
            return np.where(keep, scores, 0)
        from scipy.sparse import diags

        out = (scores @ diags(keep.astype(scores.dtype))).tocsr()
        out.eliminate_zeros()
        return out

    def mask_dense(self, scores: np.ndarray, offset: int = 0) -> None:
        """Set excluded cells of a (requests x items) score block to -inf, in place."""
        n_items = scores.shape[1]
        ts = self.ts[offset : offset + len(scores)]
        created = self.created[:n_items]
        scores[created[None, :] > ts[:, None]] = -np.inf
        if self.allowed is not None:
            scores[:, ~self.allowed[:n_items]] = -np.inf
        rows = self.bought[REQ].to_numpy() - offset
        ok = (rows >= 0) & (rows < len(scores))
        items = self.bought[ITEM].to_numpy()[ok]
        keep = items < n_items
        scores[rows[ok][keep], items[keep]] = -np.inf

    def filter(self, pairs: pd.DataFrame) -> pd.DataFrame:
        """Drop excluded (req, item) rows of a candidate frame."""
        if len(pairs) == 0:
            return pairs
        launched = self.created[pairs[ITEM].to_numpy()] <= self.ts[pairs[REQ].to_numpy()]
        pairs = pairs[launched]
        if self.allowed is not None:
            pairs = pairs[self.allowed[pairs[ITEM].to_numpy()]]
        if len(self.bought):
            key = pairs[REQ].to_numpy().astype(np.int64) * (1 << 32) + pairs[ITEM].to_numpy()
            banned = (
                self.bought[REQ].to_numpy().astype(np.int64) * (1 << 32)
                + self.bought[ITEM].to_numpy()
            )
            pairs = pairs[~np.isin(key, banned)]
        return pairs


def top_n(scores: np.ndarray, n: int, offset: int = 0) -> pd.DataFrame:
    """The n best finite cells of each row of a dense block, as ``req, item, score``."""
    n = min(n, scores.shape[1])
    if n <= 0 or scores.size == 0:
        return pd.DataFrame({REQ: [], ITEM: [], "score": []})
    part = np.argpartition(-scores, n - 1, axis=1)[:, :n]
    vals = np.take_along_axis(scores, part, axis=1)
    rows = np.repeat(np.arange(len(scores)) + offset, n)
    frame = pd.DataFrame({REQ: rows, ITEM: part.ravel(), "score": vals.ravel()})
    return frame[np.isfinite(frame["score"].to_numpy())]


def top_n_sparse(matrix, n: int, offset: int = 0) -> pd.DataFrame:
    """The n largest stored values of each row of a CSR matrix, as ``req, item, score``."""
    matrix = matrix.tocsr()
    reqs, items, vals = [], [], []
    indptr, indices, data = matrix.indptr, matrix.indices, matrix.data
    for row in range(matrix.shape[0]):
        lo, hi = indptr[row], indptr[row + 1]
        if hi == lo:
            continue
        d = data[lo:hi]
        pick = np.argpartition(-d, n - 1)[:n] if hi - lo > n else np.arange(hi - lo)
        reqs.append(np.full(len(pick), row + offset))
        items.append(indices[lo:hi][pick])
        vals.append(d[pick])
    if not reqs:
        return pd.DataFrame({REQ: [], ITEM: [], "score": []})
    return pd.DataFrame(
        {REQ: np.concatenate(reqs), ITEM: np.concatenate(items), "score": np.concatenate(vals)}
    )


def seed_matrix(batch: Batch, n_items: int, recent: int, decay: float, by_weight: bool = True):
    """(requests x items) sparse weights of each request's last ``recent`` distinct items.

    The newest item weighs 1, the one before ``decay``, and so on; with ``by_weight`` a
    purchase counts more than a view. Item-to-item sources multiply this by their matrices.
    """
    from scipy.sparse import csr_matrix

    hist = batch.history
    last = hist.drop_duplicates([REQ, ITEM], keep="last")
    last = last.groupby(REQ, sort=False).tail(recent)
    age = last.groupby(REQ, sort=False).cumcount(ascending=False).to_numpy()
    w = decay ** age.astype(np.float64)
    if by_weight:
        w = w * np.sqrt(last[WEIGHT].to_numpy(dtype=np.float64))
    return csr_matrix(
        (w, (last[REQ].to_numpy(), last[ITEM].to_numpy())), shape=(len(batch), n_items)
    )


def last_item_matrix(batch: Batch, n_items: int):
    """(requests x items) with a 1 at each request's most recent item."""
    from scipy.sparse import csr_matrix

    last = batch.history.groupby(REQ, sort=False).tail(1)
    return csr_matrix(
        (np.ones(len(last)), (last[REQ].to_numpy(), last[ITEM].to_numpy())),
        shape=(len(batch), n_items),
    )


def gather(matrix, pairs: pd.DataFrame) -> np.ndarray:
    """Values of a (requests x items) matrix at each (req, item) of ``pairs``."""
    if len(pairs) == 0:
        return np.zeros(0)
    return np.asarray(matrix[pairs[REQ].to_numpy(), pairs[ITEM].to_numpy()]).ravel()
