"""Item-to-item sources: what follows what, what is viewed together, what the same people buy.

Three sparse item x item matrices, each pruned to its strongest neighbours:

- ``follow``: item j within the next few events after item i of the same user (directed, the
  signal of purchase sequences: cleanser then toner);
- ``session``: i and j in the same session (symmetric);
- ``knn``: implicit's BM25 item-item nearest neighbours over whole user histories.

A request's scores are its recent items (newest weighs most) times each matrix.
"""

import logging

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix, diags

from recommender.config import CovisitConfig
from recommender.state import (
    ITEM,
    TS,
    WEIGHT,
    Batch,
    Exclusions,
    best_kept,
    gather,
    last_item_matrix,
    pair_key,
    proposal_frame,
    seed_matrix,
    top_n_rows,
)
from recsys import columns as c

logger = logging.getLogger(__name__)
DAY = 86_400.0
MATRICES = ("follow", "session", "knn")
BLEND = ("follow", "session", "knn", "follow_last")  # summed in this order


def _blend(
    parts: list[csr_matrix], allowed: np.ndarray | None, n_rows: int, n_items: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The sum of four (requests x items) score matrices, zero where the rules forbid, as
    CSR arrays (``indptr, items, scores``), each row's values in the order scipy's
    ``a + b + c + d`` (then ``@ diags(allowed)``) stores them.

    That order decides between equal scores (the top list takes them in it), and scipy's
    addition orders a row differently when every row of both operands happens to be sorted:
    a request alone could rank ties otherwise than within a batch. Here every request is
    ordered as in a batch, whatever else is in it: a sum lists the columns the right operand
    adds (newest first) and then the left operand's reversed; restricting reverses the row.
    The values are the same sums, in the same order: ((a + b) + c) + d.
    """
    rows, cols, vals, source, position = [], [], [], [], []
    for k, m in enumerate(parts):
        sizes = np.diff(m.indptr)
        row = np.repeat(np.arange(m.shape[0]), sizes)
        rows.append(row)
        cols.append(m.indices.astype(np.int64))
        vals.append(m.data)
        source.append(np.full(m.nnz, k))
        position.append(np.arange(m.nnz) - m.indptr[row])
    rows, cols, vals = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
    source, position = np.concatenate(source), np.concatenate(position)
    # each cell once (first found in the first operand holding it) with its sum
    cells, first, where = np.unique(pair_key(rows, cols), return_index=True, return_inverse=True)
    total = np.zeros(len(cells))
    for k in range(len(parts)):  # a + b, then + c, then + d
        mine = source == k
        total[where[mine]] += vals[mine]
    row, col = rows[first], cols[first]
    first_source, place = source[first], position[first]
    if allowed is None:
        # sum order: d's new columns reversed, b's new reversed, a reversed, c's new
        rank = np.array([2, 1, 3, 0])[first_source]
        place = np.where(first_source == 2, place, -place)
        keep = total != 0
    else:
        # restricted (the sum's order reversed): c's new reversed, a, b's new, d's new
        rank = np.array([1, 2, 0, 3])[first_source]
        place = np.where(first_source == 2, -place, place)
        upto = np.zeros(n_items, dtype=bool)
        upto[: min(n_items, len(allowed))] = allowed[: min(n_items, len(allowed))]
        keep = (total != 0) & upto[col]
    order = np.lexsort((place, rank, row))
    order = order[keep[order]]
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(row[order], minlength=n_rows), out=indptr[1:])
    return indptr, col[order].astype(parts[0].indices.dtype), total[order]


def _prune(matrix: csr_matrix, keep: int) -> csr_matrix:
    """Keep the ``keep`` largest values of each row."""
    matrix = matrix.tocsr()
    matrix.sum_duplicates()
    indptr, data = matrix.indptr, matrix.data
    mask = np.ones(len(data), dtype=bool)
    long_rows = np.flatnonzero(np.diff(indptr) > keep)
    for row in long_rows:
        lo, hi = indptr[row], indptr[row + 1]
        drop = np.argpartition(-data[lo:hi], keep)[keep:]
        mask[lo + drop] = False
    matrix.data = np.where(mask, data, 0.0)
    matrix.eliminate_zeros()
    return matrix


def _row_normalise(matrix: csr_matrix) -> csr_matrix:
    sums = np.asarray(matrix.sum(axis=1)).ravel()
    return (diags(1.0 / np.where(sums > 0, sums, 1.0)) @ matrix).tocsr()


class CovisitSource:
    name = "covisit"

    def __init__(self, config: CovisitConfig) -> None:
        self.config = config
        self.matrices: dict[str, csr_matrix] = {}

    def fit(self, events: pd.DataFrame, user_rows: np.ndarray, n_users: int, n_items: int) -> None:
        """``events``: an event frame sorted by user and time; ``user_rows``: their users."""
        cfg = self.config
        item = events[ITEM].to_numpy()
        ts = events[TS].to_numpy()
        user = user_rows
        weight = events[WEIGHT].to_numpy(dtype=np.float64)
        session = events[c.SESSION_ID].to_numpy() if c.SESSION_ID in events else None
        rows, cols, vals, srows, scols, svals = [], [], [], [], [], []
        for d in range(1, cfg.follow_window + 1):
            a, b = slice(0, len(item) - d), slice(d, len(item))
            same = (user[a] == user[b]) & (item[a] != item[b])
            near = same & ((ts[b] - ts[a]) <= cfg.max_gap_days * DAY)
            rows.append(item[a][near])
            cols.append(item[b][near])
            vals.append(weight[b][near] / d)
            if session is not None:
                together = same & (session[a] == session[b])
                for x, y in ((a, b), (b, a)):
                    srows.append(item[x][together])
                    scols.append(item[y][together])
                    svals.append(np.full(int(together.sum()), 1.0 / d))
        shape = (n_items, n_items)

        def build(r, cl, v) -> csr_matrix:
            if not r:
                return csr_matrix(shape)
            m = csr_matrix((np.concatenate(v), (np.concatenate(r), np.concatenate(cl))), shape)
            return _row_normalise(_prune(m, cfg.neighbours))

        self.matrices["follow"] = build(rows, cols, vals)
        self.matrices["session"] = build(srows, scols, svals)
        self.matrices["knn"] = self._knn(events, user_rows, n_users, n_items)
        logger.info(
            "co-visitation: %s non-zeros",
            {k: int(m.nnz) for k, m in self.matrices.items()},
        )

    def _knn(self, events: pd.DataFrame, user_rows: np.ndarray, n_users: int, n_items: int):
        from implicit.nearest_neighbours import BM25Recommender

        user_items = csr_matrix(
            (np.ones(len(events), dtype=np.float32), (user_rows, events[ITEM].to_numpy())),
            shape=(n_users, n_items),
        )
        user_items.data[:] = 1.0  # duplicates sum to counts below; binarise after
        user_items.sum_duplicates()
        user_items.data = np.ones_like(user_items.data)
        knn = BM25Recommender(K=self.config.knn_neighbours)
        knn.fit(user_items, show_progress=False)
        sim = knn.similarity.tocsr().astype(np.float64)
        sim.setdiag(0)
        sim.eliminate_zeros()
        return _row_normalise(sim)

    def grow(self, n_items: int) -> None:
        for name, m in self.matrices.items():
            if m.shape[0] < n_items:
                m = m.tocoo()
                self.matrices[name] = csr_matrix((m.data, (m.row, m.col)), shape=(n_items, n_items))

    def _scores(self, batch: Batch, n_items: int) -> dict[str, csr_matrix]:
        """Each request's scores by each matrix (and by ``follow`` from its last item alone),
        computed once per batch where the batch reuses them (see ``Batch.reusing``)."""
        return batch.remember(self, "scores", lambda: self._products(batch, n_items))

    def _products(self, batch: Batch, n_items: int) -> dict[str, csr_matrix]:
        cfg = self.config
        seeds = seed_matrix(batch, n_items, cfg.recent_items, cfg.decay)
        last = last_item_matrix(batch, n_items)
        out = {name: (seeds @ m).tocsr() for name, m in self.matrices.items()}
        out["follow_last"] = (last @ self.matrices["follow"]).tocsr()
        return out

    def propose(self, batch: Batch, exclusions: Exclusions) -> pd.DataFrame:
        return proposal_frame(*self.proposals(batch, exclusions))

    def proposals(self, batch: Batch, exclusions: Exclusions) -> tuple[np.ndarray, ...]:
        """``propose`` as arrays: twice the candidates by the blended score, the excluded
        dropped, the best ``candidates`` kept."""
        n_items = self.matrices["follow"].shape[0]
        scores = self._scores(batch, n_items)
        indptr, items, blend = _blend(
            [scores[name] for name in BLEND], exclusions.allowed, len(batch), n_items
        )
        reqs, items, score = top_n_rows(indptr, items, blend, self.config.candidates * 2)
        ok = exclusions.keep(reqs, items)
        return best_kept(reqs, items, score, ok, self.config.candidates)

    def features(self, batch: Batch, pairs: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(self.feature_columns(batch, pairs), index=pairs.index)

    def feature_columns(self, batch: Batch, pairs: pd.DataFrame) -> dict[str, np.ndarray]:
        n_items = self.matrices["follow"].shape[0]
        scores = self._scores(batch, n_items)
        return {f"covisit_{name}": gather(m, pairs) for name, m in scores.items()}

    def neighbours(self, item: int) -> pd.Series:
        """Blended item-to-item scores of one item (for similar-item lists)."""
        row = sum(self.matrices[name][item] for name in MATRICES)
        row = row.tocoo()
        return pd.Series(row.data, index=row.col).sort_values(ascending=False)
