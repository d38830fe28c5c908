"""Content similarity from category path, brand and attributes: the source for new products.

Products are embedded once (TF-IDF over their tokens, reduced by truncated SVD); a product
added after training is embedded by the same fitted transform, so it can be recommended and
get similar items from the first request on. A user's profile is the decayed mean of the
embeddings of their recent items.
"""

import logging

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix

from recommender.config import ContentConfig
from recommender.state import (
    ITEM,
    REQ,
    Batch,
    DistinctRows,
    Exclusions,
    concat_proposals,
    first_of_each,
    last_items,
    pair_key,
    proposal_frame,
    seed_matrix,
    top_n_arrays,
)
from recsys import columns as c

logger = logging.getLogger(__name__)
DAY = 86_400.0
CHUNK = 1024


def tokens(facts: pd.DataFrame) -> list[list[str]]:
    """Each product's words: every prefix of its category path, its brand, its attributes."""
    out = []
    cats = facts[c.CATEGORY].to_numpy(dtype=object)
    brands = facts[c.BRAND].to_numpy(dtype=object)
    attrs = facts[c.ATTRIBUTES].to_numpy(dtype=object)
    for cat, brand, attr in zip(cats, brands, attrs, strict=True):
        words = []
        if isinstance(cat, str) and cat:
            parts = [p.strip() for p in cat.split(c.CATEGORY_SEPARATOR.strip())]
            words += ["cat:" + ">".join(parts[: i + 1]) for i in range(len(parts))]
        if isinstance(brand, str) and brand:
            words.append("brand:" + brand)
        if isinstance(attr, str) and attr:
            words += ["attr:" + a.strip() for a in attr.split(c.ATTRIBUTE_SEPARATOR) if a.strip()]
        out.append(words or ["(none)"])
    return out


def _words(words: list[str]) -> list[str]:
    """The analyzer: products arrive tokenised (a named function, so the model pickles)."""
    return words


class ContentSource:
    name = "content"

    def __init__(self, config: ContentConfig, seed: int) -> None:
        self.config = config
        self.seed = seed
        self.vectorizer = None
        self.svd = None
        self.embeddings = np.zeros((0, config.dimensions), dtype=np.float32)
        self._distinct: DistinctRows | None = None

    def __getstate__(self) -> dict:
        # the distinct rows are derived: rebuilt on first use after loading
        return {k: v for k, v in self.__dict__.items() if k != "_distinct"}

    def distinct(self) -> DistinctRows:
        found = getattr(self, "_distinct", None)
        if found is None or found.shape != self.embeddings.shape:
            found = self._distinct = DistinctRows(self.embeddings)
        return found

    def fit(self, facts: pd.DataFrame) -> None:
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.vectorizer = TfidfVectorizer(analyzer=_words, min_df=1)
        matrix = self.vectorizer.fit_transform(tokens(facts))
        if min(matrix.shape) < 2:
            # one word for every product (no category, brand or attributes in the catalogue,
            # or no products table): nothing tells products apart, so the source is off
            # (zero embeddings: it proposes nothing and its ranker features carry nothing)
            self.svd = None
            self.embeddings = np.zeros((matrix.shape[0], 1), dtype=np.float32)
            self._distinct = None
            logger.warning(
                "content: off, the catalogue has no category, brand or attributes to tell "
                "its %d products apart",
                matrix.shape[0],
            )
            return
        dims = max(1, min(self.config.dimensions, matrix.shape[1] - 1, matrix.shape[0] - 1))
        self.svd = TruncatedSVD(n_components=dims, random_state=self.seed, algorithm="arpack")
        self.svd.fit(matrix)
        self.embeddings = self._embed_matrix(matrix)
        self._distinct = None
        logger.info("content: %d products, %d tokens, %d dims", *matrix.shape, dims)

    def _embed_matrix(self, matrix) -> np.ndarray:
        if self.svd is None:  # off (see ``fit``)
            return np.zeros((matrix.shape[0], self.embeddings.shape[1]), dtype=np.float32)
        e = self.svd.transform(matrix).astype(np.float32)
        return e / (np.linalg.norm(e, axis=1, keepdims=True) + 1e-9)

    def embed(self, facts: pd.DataFrame) -> np.ndarray:
        return self._embed_matrix(self.vectorizer.transform(tokens(facts)))

    def grow(self, facts: pd.DataFrame, rows: np.ndarray) -> None:
        """Embed (new or changed) catalogue rows ``rows`` of ``facts``."""
        need = len(facts) - len(self.embeddings)
        if need > 0:
            pad = np.zeros((need, self.embeddings.shape[1]), dtype=np.float32)
            self.embeddings = np.vstack([self.embeddings, pad])
        if len(rows):
            self.embeddings[rows] = self.embed(facts.iloc[rows])
        self._distinct = None

    def profiles(self, batch: Batch) -> np.ndarray:
        return batch.remember(self, "profiles", lambda: self._profiles(batch))

    def _profiles(self, batch: Batch) -> np.ndarray:
        seeds = seed_matrix(batch, len(self.embeddings), 20, 0.8)
        # the seeds' own items only: scipy would first widen every embedding to float64
        used, columns = np.unique(seeds.indices, return_inverse=True)
        seeds = csr_matrix((seeds.data, columns, seeds.indptr), shape=(len(batch), len(used)))
        prof = np.asarray(seeds @ self.embeddings[used], dtype=np.float32)
        return prof / (np.linalg.norm(prof, axis=1, keepdims=True) + 1e-9)

    def propose(self, batch: Batch, exclusions: Exclusions) -> pd.DataFrame:
        return proposal_frame(*self.proposals(batch, exclusions))

    def proposals(self, batch: Batch, exclusions: Exclusions) -> tuple[np.ndarray, ...]:
        """``propose`` as arrays: the closest items, then the closest new ones (each item
        once, where first found)."""
        cfg = self.config
        prof = self.profiles(batch)
        has = np.abs(prof).sum(axis=1) > 0
        created = exclusions.created[: len(self.embeddings)]
        parts = []
        for start in range(0, len(batch), CHUNK):
            block = self.distinct().scores(prof[start : start + CHUNK], self.embeddings)
            block[~has[start : start + CHUNK]] = -np.inf
            exclusions.mask_dense(block, start)
            parts.append(top_n_arrays(block, cfg.candidates, start))
            # the new items: only those launched within new_days of the block's first request
            # can be (a few of the catalogue), in item order, so ties break as over all items
            since = exclusions.ts[start : start + len(block)] - cfg.new_days * DAY
            recent = np.flatnonzero(created >= since.min())
            fresh = block[:, recent]
            fresh[created[recent][None, :] < since[:, None]] = -np.inf
            reqs, columns, scores = top_n_arrays(fresh, cfg.new_candidates, start)
            parts.append((reqs, recent[columns], scores))
        reqs, items, scores = concat_proposals(parts)
        first = first_of_each(pair_key(reqs, items))
        return reqs[first], items[first], scores[first]

    def features(self, batch: Batch, pairs: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(self.feature_columns(batch, pairs), index=pairs.index)

    def feature_columns(self, batch: Batch, pairs: pd.DataFrame) -> dict[str, np.ndarray]:
        prof = self.profiles(batch)
        items = self.embeddings[pairs[ITEM].to_numpy()]
        reqs = pairs[REQ].to_numpy()
        last = np.full(len(batch), -1, dtype=np.int64)  # each request's newest item
        with_past, newest = last_items(batch)
        last[with_past] = newest
        last_item = last[reqs]
        known = last_item >= 0
        sim_last = np.full(len(pairs), np.nan, dtype=np.float32)
        if known.any():
            lv = self.embeddings[last_item[known]]
            sim_last[known] = np.einsum("ij,ij->i", lv, items[known])
        return {
            "content_score": np.einsum("ij,ij->i", prof[reqs], items),
            "content_last": sim_last,
        }

    def similar(self, items: np.ndarray) -> np.ndarray:
        return self.embeddings[items] @ self.embeddings.T
