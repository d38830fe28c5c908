"""Collaborative filtering with implicit's ALS on event-weighted, recency-decayed interactions.

Users unknown to the fitted model (new users with a few events or a session) are folded in:
their vector is solved from the items they touched, against the fitted item factors.
"""

import logging

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix

from recommender.config import AlsConfig
from recommender.state import (
    ITEM,
    REQ,
    TS,
    WEIGHT,
    Batch,
    Exclusions,
    block_scores,
    concat_proposals,
    proposal_frame,
    top_n_arrays,
)

logger = logging.getLogger(__name__)
DAY = 86_400.0
CHUNK = 1024


class AlsSource:
    name = "als"

    def __init__(self, config: AlsConfig, seed: int) -> None:
        self.config = config
        self.seed = seed
        self.user_factors = np.zeros((0, config.factors), dtype=np.float32)
        self.item_factors = np.zeros((0, config.factors), dtype=np.float32)

    def fit(self, events: pd.DataFrame, user_rows: np.ndarray, n_users: int, n_items: int) -> None:
        """``events``: an event frame; ``user_rows``: each event's user row."""
        from implicit.cpu.als import AlternatingLeastSquares
        from implicit.nearest_neighbours import bm25_weight
        from threadpoolctl import threadpool_limits

        cfg = self.config
        end = events[TS].max()
        decay = 0.5 ** ((end - events[TS].to_numpy()) / (cfg.half_life_days * DAY))
        matrix = csr_matrix(
            (events[WEIGHT].to_numpy() * decay, (user_rows, events[ITEM].to_numpy())),
            shape=(n_users, n_items),
            dtype=np.float32,
        )
        matrix.sum_duplicates()
        if cfg.bm25:
            matrix = bm25_weight(matrix, K1=100, B=0.8).tocsr()
        model = AlternatingLeastSquares(
            factors=cfg.factors,
            regularization=cfg.regularization,
            alpha=cfg.alpha,
            iterations=cfg.iterations,
            random_state=self.seed,
        )
        with threadpool_limits(1, "blas"):
            model.fit(matrix.astype(np.float32), show_progress=False)
        self.user_factors = np.asarray(model.user_factors, dtype=np.float32)
        self.item_factors = np.asarray(model.item_factors, dtype=np.float32)
        self._gram = self.item_factors.T @ self.item_factors
        logger.info("ALS: %d users x %d items, %d factors", n_users, n_items, cfg.factors)

    def grow(self, n_items: int) -> None:
        """New catalogue items get zero factors: ALS cannot score what nobody touched."""
        extra = n_items - len(self.item_factors)
        if extra > 0:
            pad = np.zeros((extra, self.item_factors.shape[1]), dtype=np.float32)
            self.item_factors = np.vstack([self.item_factors, pad])

    def user_vectors(self, batch: Batch) -> np.ndarray:
        """Fitted vectors of known users; vectors folded in from history for the others."""
        return batch.remember(self, "vectors", lambda: self._user_vectors(batch))

    def _user_vectors(self, batch: Batch) -> np.ndarray:
        users = batch.requests["user"].to_numpy()
        vectors = np.zeros((len(batch), self.item_factors.shape[1]), dtype=np.float32)
        known = (users >= 0) & (users < len(self.user_factors))
        vectors[known] = self.user_factors[users[known]]
        reqs = batch.history[REQ].to_numpy()
        rows = np.flatnonzero(~known[reqs])  # the history of unknown users
        if len(rows):
            items, weights = batch.history[ITEM].to_numpy(), batch.history[WEIGHT].to_numpy()
            rows = rows[np.argsort(reqs[rows], kind="stable")]  # by request, oldest first
            for group in np.split(rows, np.flatnonzero(np.diff(reqs[rows])) + 1):
                vectors[reqs[group[0]]] = self._fold_in(items[group], weights[group])
        return vectors

    def _fold_in(self, items: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """One least-squares step of ALS for a new user (Hu, Koren and Volinsky, eq. 4)."""
        y = self.item_factors[items].astype(np.float64)
        conf = self.config.alpha * weights.astype(np.float64)
        a = self._gram + (y.T * conf) @ y + self.config.regularization * np.eye(y.shape[1])
        b = y.T @ (1.0 + conf)
        return np.linalg.solve(a, b).astype(np.float32)

    def propose(self, batch: Batch, exclusions: Exclusions) -> pd.DataFrame:
        return proposal_frame(*self.proposals(batch, exclusions))

    def proposals(self, batch: Batch, exclusions: Exclusions) -> tuple[np.ndarray, ...]:
        """``propose`` as arrays (requests, items, scores)."""
        n = self.config.candidates
        vectors = self.user_vectors(batch)
        has = np.abs(vectors).sum(axis=1) > 0
        parts = []
        for start in range(0, len(batch), CHUNK):
            block = block_scores(vectors[start : start + CHUNK], self.item_factors)
            block[~has[start : start + CHUNK]] = -np.inf
            exclusions.mask_dense(block, start)
            parts.append(top_n_arrays(block, n, start))
        return concat_proposals(parts)

    def features(self, batch: Batch, pairs: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(self.feature_columns(batch, pairs), index=pairs.index)

    def feature_columns(self, batch: Batch, pairs: pd.DataFrame) -> dict[str, np.ndarray]:
        vectors = self.user_vectors(batch)
        u = vectors[pairs[REQ].to_numpy()]
        v = self.item_factors[pairs[ITEM].to_numpy()]
        return {"als_score": np.einsum("ij,ij->i", u, v)}

    def similar(self, items: np.ndarray) -> np.ndarray:
        """Item factors of ``items`` against all items (cosine), for similar-item lists."""
        f = self.item_factors
        norms = np.linalg.norm(f, axis=1) + 1e-9
        return (f[items] / norms[items, None]) @ (f / norms[:, None]).T
