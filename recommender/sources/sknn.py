"""Session-based nearest neighbours (V-SKNN): what the past sessions most like this one held.

A request's recent items, newest weighing most (linearly: the k-th of n weighs k/n), are
compared with every stored session: the similarity is the summed weight of the items they
share, divided by the square root of the stored session's length (a long session shares
something with everyone) and raised for recent sessions. The ``neighbours`` most similar
sessions vote for their items, each vote the session's similarity times the item's IDF (an
item in every session says little). The request's own items may come back: in click logs a
visitor often returns to an item of the session.

Ludewig & Jannach (2018), "Evaluation of session-based recommendation algorithms": simple
neighbourhood methods match neural session models on most logs. The same source answers an
anonymous visitor (the session is the whole past) and a known user's live session.
"""

import logging

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix, diags

from recommender.config import SessionKnnConfig
from recommender.state import (
    ITEM,
    REQ,
    TS,
    Batch,
    Exclusions,
    best_kept,
    gather,
    group_positions,
    last_of_each,
    pair_key,
    proposal_frame,
    spans,
    top_n_rows,
)
from recsys import columns as c

logger = logging.getLogger(__name__)
SESSION_GAP_SECONDS = 30 * 60  # without session ids: a longer pause starts a new session


def session_numbers(events: pd.DataFrame, user_rows: np.ndarray) -> np.ndarray:
    """Each event's session (0..N-1) in an event frame sorted by user and time: a run of a
    user's events with one ``session_id``, or without session ids, without a pause of more
    than half an hour. (Runs, not ids: a user's session ids follow each other in time, and
    comparing neighbours costs a fiftieth of factorising pairs of user and id.)"""
    new = np.ones(len(events), dtype=bool)
    new[1:] = user_rows[1:] != user_rows[:-1]
    if c.SESSION_ID in events:
        ids = events[c.SESSION_ID].to_numpy(dtype=object)
        new[1:] |= ids[1:] != ids[:-1]
    else:
        new[1:] |= np.diff(events[TS].to_numpy(dtype=np.float64)) > SESSION_GAP_SECONDS
    return np.cumsum(new) - 1


def _compact(matrix: csr_matrix, columns: np.ndarray | None = None):
    """``matrix`` over only ``columns`` (sorted; default: those it uses), renumbered 0..n-1,
    and those columns."""
    return _compact_arrays(matrix.indptr, matrix.indices, matrix.data, columns)


def _compact_arrays(indptr, indices, data, columns: np.ndarray | None = None):
    if columns is None:
        columns = np.unique(indices)
    compact = csr_matrix(
        (data, np.searchsorted(columns, indices), indptr),
        shape=(len(indptr) - 1, len(columns)),
    )
    return compact, columns


def _compact_rows(matrix: csr_matrix, rows: np.ndarray):
    """``_compact(matrix[rows])``, the rows gathered directly (scipy's row indexing and a
    second matrix cost a request more than the gathering)."""
    starts = matrix.indptr[rows]
    sizes = matrix.indptr[rows + 1] - starts
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(sizes, out=indptr[1:])
    at = spans(starts, sizes)
    return _compact_arrays(indptr, matrix.indices[at], matrix.data[at])


class SessionKnnSource:
    name = "sknn"

    def __init__(self, config: SessionKnnConfig) -> None:
        self.config = config
        self.by_item = csr_matrix((0, 0), dtype=np.float32)  # items x sessions, weighted
        self.voting = csr_matrix((0, 0))  # sessions x items, each item's IDF

    def fit(self, events: pd.DataFrame, user_rows: np.ndarray, n_items: int) -> None:
        """``events``: an event frame sorted by user and time; ``user_rows``: their users."""
        cfg = self.config
        session = session_numbers(events, user_rows)
        n_sessions = int(session.max()) + 1 if len(session) else 0
        item = events[ITEM].to_numpy().astype(np.int64)
        ts = events[TS].to_numpy(dtype=np.float64)
        pairs = np.sort(pair_key(session, item))  # (distinct: a sort, faster than a hash)
        pairs = pairs[np.r_[True, pairs[1:] != pairs[:-1]]] if len(pairs) else pairs
        s, i = pairs >> 32, pairs & np.int64((1 << 32) - 1)
        length = np.bincount(s, minlength=n_sessions).astype(np.float64)
        df = np.bincount(i, minlength=n_items).astype(np.float64)
        idf = np.log(max(n_sessions, 1) / np.maximum(df, 1.0))
        end = np.full(n_sessions, -np.inf)
        np.maximum.at(end, session, ts)
        span = end.max() - end.min() if n_sessions else 0.0
        recency = (end - end.min()) / span if span > 0 else np.ones(n_sessions)
        # each item keeps its most recent sessions only: a request compares itself with the
        # sessions that share an item, and a popular item's are mostly old news
        order = np.lexsort((-end[s], i))
        keep = order[group_positions(i[order])[0] < cfg.sessions_per_item]
        s, i = s[keep], i[keep]
        ones = np.ones(len(s), dtype=np.float32)
        sessions = csr_matrix((ones, (s, i)), shape=(n_sessions, n_items))
        weight = (1.0 + cfg.recency_weight * recency) / np.sqrt(np.maximum(length, 1.0))
        self.by_item = (sessions.T.tocsr() @ diags(weight.astype(np.float32))).tocsr()
        # each session's items weighted by their IDF: what a neighbour's vote is worth
        self.voting = (sessions @ diags(idf)).tocsr()
        logger.info(
            "session-KNN: %s sessions, %s session-item pairs kept", f"{n_sessions:,}", f"{len(s):,}"
        )

    def grow(self, n_items: int) -> None:
        if n_items > self.voting.shape[1]:
            b = self.by_item.tocoo()
            self.by_item = csr_matrix((b.data, (b.row, b.col)), shape=(n_items, b.shape[1]))
            v = self.voting.tocoo()
            self.voting = csr_matrix((v.data, (v.row, v.col)), shape=(v.shape[0], n_items))

    def _query(self, batch: Batch, n_items: int) -> csr_matrix:
        """(requests x items): each request's last ``recent_items`` distinct items, the
        newest weighing 1, the k-th of n k/n."""
        hist = batch.history
        reqs, items = hist[REQ].to_numpy(), hist[ITEM].to_numpy()
        last = last_of_each(pair_key(reqs, items))  # an item's last event only
        position, size = group_positions(reqs[last])
        kept = last[size - position <= self.config.recent_items]
        position, size = group_positions(reqs[kept])
        weight = (position + 1) / size
        return csr_matrix((weight, (reqs[kept], items[kept])), shape=(len(batch), n_items))

    def _scores(self, batch: Batch) -> csr_matrix:
        return batch.remember(self, "scores", lambda: self._vote(batch))

    def _vote(self, batch: Batch) -> csr_matrix:
        """(requests x items) votes. The products run on the few sessions and items the
        batch touches, numbered compactly: scipy's sparse product costs time in proportion to
        its columns, and a request alone against half a million sessions spent most of its
        0.5 ms there (the same sums, in the same order, as over the whole matrices)."""
        n_items = self.voting.shape[1]
        query = self._query(batch, n_items)
        items = np.unique(query.indices)
        query, _ = _compact(query, items)
        rows_of_items, sessions = _compact_rows(self.by_item, items)
        similar = (query @ rows_of_items).tocsr()
        rows, cols, sims = top_n_rows(
            similar.indptr, similar.indices, similar.data, self.config.neighbours
        )
        near_sessions = np.unique(sessions[cols])
        near = csr_matrix(
            (sims, (rows, np.searchsorted(near_sessions, sessions[cols]))),
            shape=(len(batch), len(near_sessions)),
        )
        their_items, voted = _compact_rows(self.voting, near_sessions)
        votes = (near @ their_items).tocsr()
        return csr_matrix(
            (votes.data, voted[votes.indices], votes.indptr), shape=(len(batch), n_items)
        )

    def propose(self, batch: Batch, exclusions: Exclusions) -> pd.DataFrame:
        return proposal_frame(*self.proposals(batch, exclusions))

    def proposals(self, batch: Batch, exclusions: Exclusions) -> tuple[np.ndarray, ...]:
        """``propose`` as arrays: twice the candidates by vote, the excluded dropped, the
        best ``candidates`` kept."""
        scores = exclusions.restrict(self._scores(batch))
        reqs, items, score = top_n_rows(
            scores.indptr, scores.indices, scores.data, self.config.candidates * 2
        )
        ok = exclusions.keep(reqs, items) & (score > 0)
        return best_kept(reqs, items, score, ok, self.config.candidates)

    def features(self, batch: Batch, pairs: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(self.feature_columns(batch, pairs), index=pairs.index)

    def feature_columns(self, batch: Batch, pairs: pd.DataFrame) -> dict[str, np.ndarray]:
        return {"sknn_score": gather(self._scores(batch), pairs)}
