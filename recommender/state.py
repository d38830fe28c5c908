"""What is known about each request when it is answered: who, when, where, and what came before.

Training builds it from the event log strictly before each request; serving builds it from the
histories stored in the model plus the live session. Sources only ever see a ``Batch``.
"""

from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import repeat

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
# a free attribute of the users table (``skin_type``) as a profile column: ``attr:skin_type``
ATTRIBUTE_PREFIX = "attr:"
# a user in the table who left the attribute empty: a value in its own right (no skin type
# given says something too), unlike a user the table does not hold (``UNKNOWN``)
NO_VALUE = "-"
# a free column with more distinct values is an identifier or free text, not a segment
MAX_ATTRIBUTE_VALUES = 100
# columns of the users table that are not free attributes: ids, dates, numbers, and the
# demographics the profile already holds as ``demo`` and ``user_country``
PROFILE_COLUMNS = frozenset({c.USER_ID, c.SIGNUP_AT, c.AGE, c.GENDER, c.COUNTRY})
NO_PROPOSALS = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0))


def as_text(values) -> np.ndarray:
    """``pd.Series(values).astype(str).to_numpy()``: ids as text, returned as they are when
    they are text already (a request's one id: pandas' conversion costs a tenth of a
    millisecond, each time)."""
    if (
        isinstance(values, np.ndarray)
        and values.dtype == object
        and all(type(v) is str for v in values)
    ):
        return values
    return pd.Series(values, copy=False).astype(str).to_numpy()


def epoch(stamps: pd.Series) -> np.ndarray:
    return (
        (pd.to_datetime(stamps, utc=True) - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy()
    )


AGE_BINS = np.array([0, 25, 35, 45, 55, 200])  # [0, 25), [25, 35), ... [55, 200)
AGE_BANDS = np.array(["<25", "25-34", "35-44", "45-54", "55+"], dtype=object)


def age_band(age: pd.Series) -> pd.Series:
    """The age band of each age, ``?`` outside 0-199 or unknown (``pd.cut``'s bands, found by
    binary search: a new user's request bands one age, where ``pd.cut`` costs a millisecond).
    """
    years = pd.to_numeric(age, errors="coerce")
    years = np.asarray(pd.Series(years, copy=False).astype("float64"), dtype=np.float64)
    band = np.searchsorted(AGE_BINS, years, side="right") - 1
    inside = (years >= AGE_BINS[0]) & (years < AGE_BINS[-1])
    bands = np.where(inside, AGE_BANDS[np.clip(band, 0, len(AGE_BANDS) - 1)], UNKNOWN)
    return pd.Series(bands, index=age.index, dtype=object)


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
    _memo: dict | None = field(default=None, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.requests)

    def chunks(self, size: int):
        """Consecutive sub-batches of at most ``size`` requests, renumbered from 0 (a batch
        that fits in one chunk is its own chunk: no copy for the service's single request)."""
        if len(self) <= size:
            yield 0, self
            return
        for start in range(0, len(self), size):
            stop = min(start + size, len(self))
            yield start, self.subset(np.arange(start, stop))

    def subset(self, reqs: np.ndarray) -> "Batch":
        reqs = np.asarray(reqs)
        # new number of each old request (-1: not kept)
        renumber = np.full(len(self), -1, dtype=np.int64)
        renumber[reqs] = np.arange(len(reqs))

        def pick(frame: pd.DataFrame) -> pd.DataFrame:
            new = renumber[frame[REQ].to_numpy()]
            keep = new >= 0
            part = frame[keep].copy()
            part[REQ] = new[keep]
            return part.reset_index(drop=True)

        touched = pick(self.touched) if self.touched is not None else None
        return Batch(pick(self.requests), pick(self.history), pick(self.bought), touched)

    @contextmanager
    def reusing(self):
        """Within the block, what sources derive from the batch (user vectors, seed scores,
        per-item aggregates) is computed once: ``recommend_batch`` proposes candidates and
        then describes them from the same scores. Outside, nothing is kept, so a large batch
        held by its caller does not hold them either."""
        outer = self._memo
        self._memo = {} if outer is None else outer
        try:
            yield self
        finally:
            self._memo = outer

    def remember(self, owner: object, what: str, compute):
        """``compute()``, once per ``owner`` and ``what`` inside ``reusing``."""
        if self._memo is None:
            return compute()
        key = (id(owner), what)
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]


def group_positions(groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each element's position within its group (0 = first, in array order) and the size of
    its group; ``groups`` are small non-negative integers (request numbers). The numpy form of
    ``groupby(sort=False).cumcount()`` without building a frame."""
    groups = np.asarray(groups, dtype=np.int64)
    if len(groups) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    order = np.argsort(groups, kind="stable")
    sizes = np.bincount(groups)
    starts = np.cumsum(sizes) - sizes
    position = np.empty(len(groups), dtype=np.int64)
    position[order] = np.arange(len(groups)) - starts[groups[order]]
    return position, sizes[groups]


def pair_key(reqs: np.ndarray, items: np.ndarray) -> np.ndarray:
    """One int64 per (request, item), ordered as the pairs are."""
    return np.asarray(reqs, dtype=np.int64) * (1 << 32) + np.asarray(items, dtype=np.int64)


def first_of_each(keys: np.ndarray) -> np.ndarray:
    """Positions of the first occurrence of each distinct key, in array order
    (``drop_duplicates()``)."""
    _, first = np.unique(keys, return_index=True)
    first.sort()
    return first


def last_of_each(keys: np.ndarray) -> np.ndarray:
    """Positions of the last occurrence of each distinct key, in array order
    (``drop_duplicates(keep="last")``)."""
    _, first_reversed = np.unique(keys[::-1], return_index=True)
    last = len(keys) - 1 - first_reversed
    last.sort()
    return last


def order_by_request_and_score(reqs: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Stable order by request, then score descending (NaN last), as
    ``sort_values([req, score], ascending=[True, False], kind="stable")`` gives."""
    return np.lexsort((-np.asarray(scores), np.asarray(reqs)))


def best_kept(
    reqs: np.ndarray, items: np.ndarray, scores: np.ndarray, ok: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A source's proposals: the cells ``ok`` keeps, each request's ``n`` best by score (ties
    in the order given), ordered by request and score."""
    reqs, items, scores = reqs[ok], items[ok], scores[ok]
    order = order_by_request_and_score(reqs, scores)
    order = order[group_positions(reqs[order])[0] < n]
    return reqs[order], items[order], scores[order]


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


def free_attributes(users: pd.DataFrame) -> list[str]:
    """The users table's free categorical columns (``skin_type``, ``region``, whatever a shop
    keeps): text or true/false columns beyond the profile's own, with 2 to
    ``MAX_ATTRIBUTE_VALUES`` distinct values. They say what a user wants before any event
    does, so popularity learns each value's tastes (``attribute_columns``)."""
    out = []
    for name in users.columns:
        column = users[name]
        if name in PROFILE_COLUMNS or name.startswith(ATTRIBUTE_PREFIX):
            continue
        if not (
            pd.api.types.is_object_dtype(column)
            or pd.api.types.is_string_dtype(column)
            or pd.api.types.is_bool_dtype(column)
            or isinstance(column.dtype, pd.CategoricalDtype)
        ):
            continue
        if 2 <= column.nunique(dropna=False) <= MAX_ATTRIBUTE_VALUES:
            out.append(name)
    return sorted(out)


def attribute_columns(columns) -> list[str]:
    """The profile's free-attribute columns (``attr:<name>``) among ``columns``."""
    return [name for name in columns if str(name).startswith(ATTRIBUTE_PREFIX)]


def user_segments(users: pd.DataFrame) -> pd.DataFrame:
    """Per user: country, demographic segment and free attributes (``attr:<name>``, ``-``
    when the user left it empty), from the users table when there is one."""
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
    for name in free_attributes(users):
        values = users[name].astype(object)
        given = values.where(values.notna(), NO_VALUE).astype(str)
        frame[ATTRIBUTE_PREFIX + name] = given.to_numpy()
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
    columns, past = requests_with_past(requests, events, user_vocab)
    return assemble(columns, past, [user_segments(users)], history_items)


def request_columns(requests: pd.DataFrame) -> dict[str, object]:
    """A request frame as a dict of its columns: the batch's request frame is built up
    column by column and made once (assigning a column to a frame costs more than the work
    for one request)."""
    return {name: requests[name].array for name in requests.columns}


def join_users(request_users: np.ndarray, row_users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The inner join of requests and per-user rows (events, a stored frame) on the user, as
    (request, row) pairs in row order: a user asked twice gets each of its rows twice. The
    numpy form of a merge: a request of the service joins its user's few rows, a training
    batch millions of events, by the same code."""
    if len(request_users) == 1:  # (the service's one request: every row of its user, in order)
        rows = np.flatnonzero(np.asarray(row_users, dtype=object) == request_users[0])
        return np.zeros(len(rows), dtype=np.intp), rows
    codes, uniques = pd.factorize(request_users, use_na_sentinel=False)
    row_code = pd.Index(uniques).get_indexer(row_users)
    mine = np.flatnonzero(row_code >= 0)
    per_user = np.bincount(codes, minlength=len(uniques))
    by_user = np.argsort(codes, kind="stable")
    first = np.cumsum(per_user) - per_user
    times = per_user[row_code[mine]]
    rows = np.repeat(mine, times)
    nth = np.arange(len(rows)) - np.repeat(np.cumsum(times) - times, times)
    return by_user[np.repeat(first[row_code[mine]], times) + nth], rows


def requests_with_past(
    requests: pd.DataFrame | dict,
    events: pd.DataFrame | dict[str, np.ndarray],
    user_vocab: Vocabulary,
    extra: dict[str, np.ndarray] | None = None,
) -> tuple[dict[str, object], dict[str, np.ndarray]]:
    """The requests' columns with ``req`` and ``user``, and their past: every event (a frame
    or columns) of the request's user strictly before its instant, plus ``extra`` events of
    the request itself (``req, item, ts, kind, weight``: its live session), ordered by
    request then instant, an event of the log before an extra one at the same instant."""
    columns = dict(requests) if isinstance(requests, dict) else request_columns(requests)
    n_reqs = len(columns[c.USER_ID])
    columns[REQ] = np.arange(n_reqs)
    user_ids = as_text(columns[c.USER_ID])
    columns["user"] = user_vocab.rows(user_ids)
    at = np.asarray(columns[TS])
    wanted = [ITEM, TS, KIND, WEIGHT, *(x for x in (c.DEVICE, c.COUNTRY) if x in events)]

    req, rows = join_users(np.asarray(columns[c.USER_ID]), np.asarray(events[c.USER_ID]))
    before = np.asarray(events[TS])[rows] < at[req]
    rows, req = rows[before], req[before]
    past = {REQ: req.astype(np.int64)}
    for name in wanted:
        past[name] = np.asarray(events[name])[rows]
    if extra is not None and len(extra[REQ]):  # (their kind and weight widen the types)
        for name in (REQ, ITEM, TS, KIND, WEIGHT):
            past[name] = np.concatenate([past[name], extra[name]])
        for name in (c.DEVICE, c.COUNTRY):
            if name in past:  # a session event says nothing of device or country
                none = np.full(len(extra[REQ]), np.nan, dtype=object)
                past[name] = np.concatenate([past[name].astype(object), none])
    order = np.lexsort((past[TS], past[REQ]))
    return columns, {name: values[order] for name, values in past.items()}


def assemble(
    columns: dict[str, object],
    past: dict[str, np.ndarray],
    segments: list[pd.DataFrame | dict],
    history_items: int,
    touched_before: tuple[np.ndarray, np.ndarray] | None = None,
) -> Batch:
    """The batch of requests (``requests_with_past``) and their ordered past: the last
    ``history_items`` events, the purchases, the items touched (after ``touched_before``,
    requests and items known otherwise); the request's device and country where it gave
    none are those of its user's last event; then ``segments`` fill the profile (each in
    turn, as ``attach_segments``)."""
    req, item = past[REQ], past[ITEM]
    position, size = group_positions(req)
    from_end = size - position - 1
    keep = from_end < history_items
    # (frames of fresh arrays: copy=False spares pandas a copy, half the cost of one request's)
    history = pd.DataFrame(
        {name: past[name][keep] for name in (REQ, ITEM, TS, KIND, WEIGHT)}, copy=False
    )
    bought = past[KIND] == PURCHASED
    firsts = first_of_each(pair_key(req[bought], item[bought]))
    bought_frame = pd.DataFrame({REQ: req[bought][firsts], ITEM: item[bought][firsts]}, copy=False)
    if touched_before is not None and len(touched_before[0]):
        req_t = np.concatenate([touched_before[0], req])
        item_t = np.concatenate([touched_before[1], item])
    else:
        req_t, item_t = req, item
    firsts = first_of_each(pair_key(req_t, item_t))
    touched = pd.DataFrame({REQ: req_t[firsts], ITEM: item_t[firsts]}, copy=False)

    n_reqs = len(columns[REQ])
    last = from_end == 0
    for column in (c.DEVICE, c.COUNTRY):
        given = columns.get(column)
        given = np.full(n_reqs, None, dtype=object) if given is None else given
        given = np.asarray(given, dtype=object)
        if column in past:
            known = np.full(n_reqs, np.nan, dtype=object)
            known[req[last]] = past[column][last]
        else:
            known = given
        columns[column] = np.where(pd.isna(given), known, given)
    for profile in segments:
        columns = _with_segments(columns, profile)
    return Batch(pd.DataFrame(columns, copy=False), history, bought_frame, touched)


def attach_segments(reqs: pd.DataFrame, segments: pd.DataFrame) -> pd.DataFrame:
    """Fill ``demo`` and ``country`` of each request (the user's profile fills a missing one)."""
    return pd.DataFrame(_with_segments(request_columns(reqs), segments))


def _with_segments(columns: dict[str, object], segments) -> dict[str, object]:
    """``attach_segments`` on a dict of columns: a left join on the user (profiles hold one
    row per user), the profile's country where the request has none, ``?`` for the unknown."""
    ids = np.asarray(segments[c.USER_ID], dtype=object)
    profile = _ProfileIndex(ids) if len(ids) <= FEW_PROFILES else pd.Index(ids)
    if not profile.is_unique:  # not a profile table: the merge, whatever it repeats
        frame = pd.DataFrame(columns).drop(columns=["demo"], errors="ignore")
        merged = frame.merge(pd.DataFrame(segments), on=c.USER_ID, how="left")
        merged = merged.sort_values(REQ)
        columns = {name: merged[name].to_numpy() for name in merged.columns}
    else:
        columns = {name: values for name, values in columns.items() if name != "demo"}
        at = profile.get_indexer(np.asarray(columns[c.USER_ID])) if len(profile) else None
        for name in segments:
            if name != c.USER_ID:
                values = np.full(len(columns[REQ]), np.nan, dtype=object)
                if at is not None:
                    found = at >= 0
                    values[found] = np.asarray(segments[name], dtype=object)[at[found]]
                columns[name] = values
    country = np.asarray(columns[c.COUNTRY], dtype=object)
    columns[c.COUNTRY] = np.where(pd.isna(country), columns.pop("user_country"), country)
    for column in SEGMENTS:  # (a free attribute stays missing: sources read it as unknown)
        values = np.asarray(columns[column], dtype=object)
        columns[column] = np.where(pd.isna(values), UNKNOWN, values)
    return columns


FEW_PROFILES = 8


class _ProfileIndex:
    """``pd.Index`` of a few profile rows (a request's user's), as ``_with_segments`` uses
    it: a dict, where building an index costs more than the request's other work."""

    def __init__(self, ids: np.ndarray) -> None:
        self.at: dict[object, int] = {}
        for row, id_ in enumerate(ids):
            self.at.setdefault(id_, row)
        self.is_unique = len(self.at) == len(ids)
        self.size = len(ids)

    def __len__(self) -> int:
        return self.size

    def get_indexer(self, wanted: np.ndarray) -> np.ndarray:
        return np.fromiter(map(self.at.get, wanted, repeat(-1)), np.intp, len(wanted))


def spans(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The positions ``start, start + 1, ..., start + length - 1`` of each span, in order:
    the rows of some keys in a frame sorted by key, or of some rows of a CSR matrix."""
    lengths = np.asarray(lengths, dtype=np.int64)
    ends = np.cumsum(lengths)
    return np.repeat(np.asarray(starts, dtype=np.int64) - ends + lengths, lengths) + np.arange(
        ends[-1] if len(ends) else 0
    )


def rows_of(sorted_keys: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Positions of every row whose key is one of ``wanted``, in a frame sorted by key: the
    few users of a request are found in a stored past of millions of rows in microseconds."""
    wanted = np.asarray(wanted, dtype=object)
    left = np.searchsorted(sorted_keys, wanted, side="left")
    right = np.searchsorted(sorted_keys, wanted, side="right")
    return spans(left, right - left)


def rows_by_request(sorted_keys: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``rows_of`` for one key per request: each request's number with each of its rows, in
    request order (the inner join of requests and a stored per-user frame sorted by user)."""
    wanted = np.asarray(wanted, dtype=object)
    left = np.searchsorted(sorted_keys, wanted, side="left")
    lengths = np.searchsorted(sorted_keys, wanted, side="right") - left
    return np.repeat(np.arange(len(wanted)), lengths), spans(left, lengths)


def session_events(
    at: np.ndarray, sessions, items: Vocabulary, weight: float, gap: float = 1.0
) -> dict[str, np.ndarray] | None:
    """Each request's live session as views (``req, item, ts, kind, weight``) before the
    request, oldest first, ``gap`` seconds apart (the last one ``gap`` before it): a given
    session has no times, so its clicks are spaced as the shop's clicks typically are, and
    features of how long ago an item was seen read as they did in training. Items the
    catalogue does not know are left out. ``None`` when no request has a session."""
    reqs, ids, ts = [], [], []
    for req, (when, session) in enumerate(zip(at, sessions, strict=True)):
        session = list(session) if session is not None else []
        for i, item in enumerate(session):
            reqs.append(req)
            ids.append(item)
            ts.append(float(when) - (len(session) - i) * gap)
    if not reqs:
        return None
    rows = items.rows(ids)
    known = rows >= 0
    return {
        REQ: np.asarray(reqs, dtype=np.int64)[known],
        ITEM: rows[known],
        TS: np.asarray(ts, dtype=np.float64)[known],
        KIND: np.zeros(int(known.sum()), dtype=np.int64),
        WEIGHT: np.full(int(known.sum()), weight, dtype=np.float64),
    }


def availability(batch: Batch, catalog: Catalog, allow_rebuy: bool) -> "Exclusions":
    return Exclusions(batch, catalog, allow_rebuy)


def kept_entries(matrix, keep: np.ndarray):
    """``(matrix @ diags(keep)).tocsr()`` without its zeros, made directly.

    The product cost a request some 0.1 ms of scipy's checks for what is a filter. Its rows
    come out last entry first (scipy's product lists a row in reverse order of first
    appearance), and so do these: top lists cut through ties exactly as before."""
    from scipy.sparse import csr_matrix

    indptr, indices, data = matrix.indptr, matrix.indices, matrix.data
    n_rows = matrix.shape[0]
    rows = np.repeat(np.arange(n_rows), np.diff(indptr))
    backwards = np.arange(len(indices) - 1, -1, -1)
    order = backwards[np.argsort(rows[backwards], kind="stable")]
    order = order[keep[indices[order]] & (data[order] != 0)]
    counts = np.bincount(rows[order], minlength=n_rows)
    return csr_matrix(
        (data[order], indices[order], np.r_[0, np.cumsum(counts)]), shape=matrix.shape
    )


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
        # (as arrays once: every source masks with them, a request's few rows each time)
        self._bought_reqs = self.bought[REQ].to_numpy()
        self._bought_items = self.bought[ITEM].to_numpy()
        self.allowed = allowed
        self._forbidden: dict[int, np.ndarray] = {}  # catalogue size -> items not allowed

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
        return kept_entries(scores.tocsr(), keep)

    def mask_dense(self, scores: np.ndarray, offset: int = 0) -> None:
        """Set excluded cells of a (requests x items) score block to -inf, in place."""
        n_items = scores.shape[1]
        ts = self.ts[offset : offset + len(scores)]
        created = self.created[:n_items]
        if len(ts):  # (only the items launched after the block's first request can be)
            late = np.flatnonzero(created > ts.min())
            if len(late):
                block = scores[:, late]
                block[created[late][None, :] > ts[:, None]] = -np.inf
                scores[:, late] = block
        if self.allowed is not None:
            scores[:, self._not_allowed(n_items)] = -np.inf
        rows = self._bought_reqs - offset
        ok = (rows >= 0) & (rows < len(scores))
        items = self._bought_items[ok]
        keep = items < n_items
        scores[rows[ok][keep], items[keep]] = -np.inf

    def _not_allowed(self, n_items: int) -> np.ndarray:
        """The items of the first ``n_items`` the rules forbid, found once per size (a few
        of a catalogue of 50,000: indexing them costs a fiftieth of a boolean mask)."""
        found = self._forbidden.get(n_items)
        if found is None:
            found = self._forbidden[n_items] = np.flatnonzero(~self.allowed[:n_items])
        return found

    def keep(self, reqs: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Whether each (req, item) may be shown: launched by the request's instant, allowed
        by the rules, not bought before (unless rebuys are allowed)."""
        ok = self.created[items] <= self.ts[reqs]
        if self.allowed is not None:
            ok &= self.allowed[items]
        if len(self._bought_reqs):
            banned = pair_key(self._bought_reqs, self._bought_items)
            ok &= ~np.isin(pair_key(reqs, items), banned)
        return ok

    def filter(self, pairs: pd.DataFrame) -> pd.DataFrame:
        """Drop excluded (req, item) rows of a candidate frame."""
        if len(pairs) == 0:
            return pairs
        return pairs[self.keep(pairs[REQ].to_numpy(), pairs[ITEM].to_numpy())]


# a wide block's threshold is read off every SAMPLE_STRIDE-th column (``top_n_arrays``)
SAMPLE_STRIDE = 16


def block_scores(rows: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """``rows @ factors.T``; a single row (the service's request) as a matrix-vector product.

    BLAS rounds a matrix-vector product differently from a block in the last bits, so a
    request alone gets its batch's scores to float32 rounding, not bit for bit, and near-ties
    may be ordered otherwise. On the full shop's model: largest difference 4.8e-7, one user of
    2,000 with its ALS top 100 in another order (``benchmarks/alone_vs_batch.py``). A block of
    two rows would give the batch's bits, at nearly twice the cost of the product (0.82 ms
    instead of 0.45 ms for 50,000 items, a tenth of a request's CPU)."""
    if len(rows) == 1:
        return (factors @ rows[0])[None, :]
    return rows @ factors.T


def top_n(scores: np.ndarray, n: int, offset: int = 0) -> pd.DataFrame:
    """The n best finite cells of each row of a dense block, as ``req, item, score``."""
    n = min(n, scores.shape[1])
    if n <= 0 or scores.size == 0:
        return pd.DataFrame({REQ: [], ITEM: [], "score": []})
    return proposal_frame(*top_n_arrays(scores, n, offset))


def top_n_arrays(
    scores: np.ndarray, n: int, offset: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``top_n`` as arrays (requests, items, scores), each row's cells best first, equal
    scores by item (so a request alone and within a batch break ties alike: argpartition
    alone would keep and order equal cells by the rest of the row).

    A wide block (the catalogue) first keeps each row's cells at or above a threshold read
    off a sample of its columns, and sorts those few: exactly the same cells and order as a
    partition of the whole row, several times faster (a partition of 50,000 columns costs
    about 1 ms a row, the bulk of candidate generation). Rows where the sample's threshold
    leaves fewer than n cells take the whole-row partition."""
    n = min(n, scores.shape[1])
    if n <= 0 or scores.size == 0:
        return NO_PROPOSALS
    if scores.shape[1] < SAMPLE_STRIDE * (4 * n + 64):
        return _top_n_partition(scores, n, offset)
    sample = scores[:, ::SAMPLE_STRIDE]
    # about twice n cells of the row are expected at or above the sample's k-th best
    k = min(sample.shape[1], 2 * (n // SAMPLE_STRIDE) + 16)
    threshold = np.partition(sample, sample.shape[1] - k, axis=1)[:, sample.shape[1] - k]
    keep = scores >= threshold[:, None]
    enough = (keep.sum(axis=1) >= n) & np.isfinite(threshold)
    keep[~enough] = False
    rows, items = np.nonzero(keep)
    vals = scores[rows, items]
    order = _by_row_best_first(rows, items, vals)
    rows, items, vals = rows[order], items[order], vals[order]
    first = (group_positions(rows)[0] < n) & np.isfinite(vals)
    found = (rows[first] + offset, items[first], vals[first])
    if enough.all():
        return found
    rest = np.flatnonzero(~enough)
    rest = rest[(scores[rest] > -np.inf).any(axis=1)]  # (rows of nothing, as unknown users')
    r, i, v = _top_n_partition(scores[rest], n, 0)
    parts = [found, (rest[r] + offset, i, v)]
    merged = concat_proposals(parts)
    by_row = np.argsort(merged[0], kind="stable")
    return tuple(a[by_row] for a in merged)


def _by_row_best_first(rows: np.ndarray, items: np.ndarray, vals: np.ndarray) -> np.ndarray:
    """The order of cells by row, best value first, then item: ``np.lexsort`` of the three,
    or for float32 one stable sort of a single integer key (six times faster). Cells come in
    row-major order, items ascending within a row, so the stable sort keeps equal values by
    item."""
    if vals.dtype != np.float32:
        return np.lexsort((items, -vals, rows))
    bits = (vals + np.float32(0)).view(np.int32).astype(np.int64)  # (-0.0 as 0.0)
    increasing = np.where(bits >= 0, bits, bits ^ 0x7FFFFFFF)  # the floats' order, as ints
    return np.argsort((rows.astype(np.int64) << 32) | (2**31 - 1 - increasing), kind="stable")


def _top_n_partition(
    scores: np.ndarray, n: int, offset: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``top_n_arrays`` by a partition of every whole row."""
    part = np.argpartition(-scores, n - 1, axis=1)[:, :n]
    vals = np.take_along_axis(scores, part, axis=1)
    kth = vals.min(axis=1)
    # cells equal to a row's n-th best beyond those argpartition kept: keep the lowest items
    ties = (scores == kth[:, None]).sum(axis=1) > (vals == kth[:, None]).sum(axis=1)
    ties &= np.isfinite(kth)  # (with fewer than n finite cells, every finite one is kept)
    if ties.any():
        for row in np.flatnonzero(ties):
            line = scores[row]
            above = np.flatnonzero(line > kth[row])
            equal = np.flatnonzero(line == kth[row])[: n - len(above)]
            part[row] = np.concatenate([above, equal])
        vals = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -vals), axis=1)
    part = np.take_along_axis(part, order, axis=1)
    vals = np.take_along_axis(vals, order, axis=1).ravel()
    rows = np.repeat(np.arange(len(scores)) + offset, n)
    finite = np.isfinite(vals)
    return rows[finite], part.ravel()[finite], vals[finite]


class DistinctRows:
    """A matrix's distinct rows and each row's place among them.

    Scores computed once per distinct row are bitwise equal for equal rows; computed per row,
    BLAS rounds them differently by their place in the block, so products with one embedding
    (copied from one template) would be ordered one way in a batch and another way alone."""

    def __init__(self, matrix: np.ndarray) -> None:
        unique, inverse = np.unique(matrix, axis=0, return_inverse=True)
        self.shape = matrix.shape
        self.unique = np.ascontiguousarray(unique)
        self.inverse = np.asarray(inverse, dtype=np.int64).reshape(-1)
        self.repeats = len(unique) < len(matrix)

    def scores(self, rows: np.ndarray, matrix: np.ndarray) -> np.ndarray:
        """``block_scores(rows, matrix)``, equal rows of ``matrix`` scored equal."""
        if not self.repeats:
            return block_scores(rows, matrix)
        # (np.take gathers the columns five times faster than fancy indexing)
        return np.take(block_scores(rows, self.unique), self.inverse, axis=1)


def concat_proposals(parts: list[tuple]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Proposals of several blocks, one after the other."""
    if len(parts) == 1:
        return parts[0]
    return (
        tuple(np.concatenate(arrays) for arrays in zip(*parts, strict=True))
        if parts
        else NO_PROPOSALS
    )


def proposal_frame(reqs: np.ndarray, items: np.ndarray, scores: np.ndarray) -> pd.DataFrame:
    """A source's proposals as the frame ``propose`` returns: ``req, item, score``."""
    return pd.DataFrame({REQ: reqs, ITEM: items, "score": scores})


def top_n_sparse(matrix, n: int, offset: int = 0) -> pd.DataFrame:
    """The n largest stored values of each row of a CSR matrix, as ``req, item, score``."""
    matrix = matrix.tocsr()
    found = top_n_rows(matrix.indptr, matrix.indices, matrix.data, n, offset)
    if not len(found[0]):
        return pd.DataFrame({REQ: [], ITEM: [], "score": []})
    return proposal_frame(*found)


def top_n_rows(
    indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, n: int, offset: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``top_n_sparse`` on the arrays of a CSR matrix, as arrays: a row of at most n values
    keeps them in their stored order, a longer one its n largest in the order argpartition
    gives."""
    sizes = np.diff(indptr)
    picked = np.arange(len(data))
    long = np.flatnonzero(sizes > n)
    if len(long):
        pieces, done = [], 0
        for row in long:
            lo, hi = indptr[row], indptr[row + 1]
            pieces += [picked[done:lo], lo + np.argpartition(-data[lo:hi], n - 1)[:n]]
            done = hi
        picked = np.concatenate([*pieces, picked[done:]])
    rows = np.repeat(np.arange(len(sizes)) + offset, np.minimum(sizes, n))
    return rows, indices[picked], data[picked]


def seed_matrix(batch: Batch, n_items: int, recent: int, decay: float, by_weight: bool = True):
    """(requests x items) sparse weights of each request's last ``recent`` distinct items.

    The newest item weighs 1, the one before ``decay``, and so on; with ``by_weight`` a
    purchase counts more than a view. Item-to-item sources multiply this by their matrices.
    The entries keep the history's order (the order of a sparse product's values follows it).
    """
    from scipy.sparse import csr_matrix

    hist = batch.history
    reqs, items = hist[REQ].to_numpy(), hist[ITEM].to_numpy()
    last = last_of_each(pair_key(reqs, items))  # an item's last event only
    position, size = group_positions(reqs[last])
    kept = last[size - position <= recent]
    position, size = group_positions(reqs[kept])
    age = size - position - 1  # 0 for the newest
    w = decay ** age.astype(np.float64)
    if by_weight:
        w = w * np.sqrt(hist[WEIGHT].to_numpy(dtype=np.float64)[kept])
    return csr_matrix((w, (reqs[kept], items[kept])), shape=(len(batch), n_items))


def last_item_matrix(batch: Batch, n_items: int):
    """(requests x items) with a 1 at each request's most recent item."""
    from scipy.sparse import csr_matrix

    reqs, items = last_items(batch)
    return csr_matrix((np.ones(len(reqs)), (reqs, items)), shape=(len(batch), n_items))


def last_items(batch: Batch) -> tuple[np.ndarray, np.ndarray]:
    """Each request with a past and its most recent item (the history's last row per
    request), in the history's order."""
    reqs = batch.history[REQ].to_numpy()
    position, size = group_positions(reqs)
    last = position == size - 1
    return reqs[last], batch.history[ITEM].to_numpy()[last]


def gather(matrix, pairs: pd.DataFrame) -> np.ndarray:
    """Values of a (requests x items) matrix at each (req, item) of ``pairs``.

    The stored cells are looked up by binary search on their (row, column) keys: scipy's
    indexing scans a row whose columns are not sorted (as a product leaves them) once per
    pair, and costs more in checks than the work for one request."""
    if len(pairs) == 0:
        return np.zeros(0)
    matrix = matrix.tocsr()
    rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
    keys = pair_key(rows, matrix.indices)
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    if len(keys) > 1 and (keys[1:] == keys[:-1]).any():  # repeated cells add up: scipy's
        return np.asarray(matrix[pairs[REQ].to_numpy(), pairs[ITEM].to_numpy()]).ravel()
    wanted = pair_key(pairs[REQ].to_numpy(), pairs[ITEM].to_numpy())
    at = np.minimum(np.searchsorted(keys, wanted), max(len(keys) - 1, 0))
    found = keys[at] == wanted if len(keys) else np.zeros(len(wanted), dtype=bool)
    out = np.zeros(len(wanted), dtype=matrix.dtype)
    out[found] = matrix.data[order[at[found]]]
    return out
