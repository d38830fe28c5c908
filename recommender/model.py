"""The recommender of one model version: candidate sources, ranker, histories, policy.

Training fits it and evaluates it through ``recommend_batch``; the service and ``recsys
recommend`` call the very same method with a batch built from the stored histories, so there
is one code path from candidates to the final list.
"""

import json
import logging
import pickle
from pathlib import Path

import numpy as np
import pandas as pd

from recommender import candidates as cand
from recommender.catalog import Catalog, Vocabulary
from recommender.config import ModelConfig
from recommender.ranker import Ranker
from recommender.sources.als import AlsSource
from recommender.sources.content import ContentSource
from recommender.sources.covisit import CovisitSource
from recommender.sources.popularity import PopularitySource
from recommender.sources.repeat import RepeatSource
from recommender.state import (
    ITEM,
    KIND,
    PURCHASED,
    REQ,
    TS,
    UNKNOWN,
    Batch,
    Exclusions,
    attach_segments,
    batch_from_events,
    demo_segment,
    rows_of,
    user_segments,
)
from recommender.stored import ranker_inputs
from recsys import columns as c

logger = logging.getLogger(__name__)
MODEL_FILE = "recommender.pkl"
CHUNK = 2_000


class Recommender:
    def __init__(self, config: ModelConfig, catalog: Catalog) -> None:
        self.config = config
        self.catalog = catalog
        self.users = Vocabulary([])
        self.segments = pd.DataFrame({c.USER_ID: [], "demo": [], "user_country": []})
        self.past = pd.DataFrame()
        self.sources: list = []
        self.ranker: Ranker | None = None
        self.allow_rebuy = config.repeat.repurchase == "allow"
        # requests without any past: ranker order, or the popularity source's own (validation
        # decides, see training.pipeline.cold_start_choice)
        self.cold_by_popularity = False
        self.meta: dict[str, object] = {}

    # ---------------------------------------------------------------- fitting
    @classmethod
    def fit(
        cls,
        events: pd.DataFrame,
        catalog: Catalog,
        users: pd.DataFrame,
        config: ModelConfig,
        only: tuple[str, ...] | None = None,
    ) -> "Recommender":
        """Fit every candidate source on an event frame (``state.event_frame``).

        ``only`` restricts the sources (baselines fit one source alone).
        """
        model = cls(config, catalog)
        ids = np.sort(pd.unique(events[c.USER_ID]).astype(object))
        model.users = Vocabulary(ids)
        model.segments = user_segments(users)
        user_rows = model.users.rows(events[c.USER_ID])
        n_users, n_items = len(model.users), len(catalog)
        wanted = only or ("als", "covisit", "content", "popularity", "repeat")
        for name in wanted:
            if name == "als":
                source = AlsSource(config.als, config.seed)
                source.fit(events, user_rows, n_users, n_items)
            elif name == "covisit":
                source = CovisitSource(config.covisit)
                source.fit(events, user_rows, n_users, n_items)
            elif name == "content":
                source = ContentSource(config.content, config.seed)
                source.fit(catalog.facts)
            elif name == "popularity":
                source = PopularitySource(config.popularity)
                source.fit(events, model.segments, n_items, catalog.facts[c.CATEGORY].to_numpy())
            elif name == "repeat":
                source = RepeatSource(config.repeat)
                source.fit(events, n_items)
            else:
                raise ValueError(f"unknown candidate source {name!r}")
            model.sources.append(source)
        model.remember(events)
        return model

    def remember(self, events: pd.DataFrame) -> None:
        """Keep what serving needs of each user: the last events and every purchase."""
        last = events.groupby(c.USER_ID, sort=False).tail(self.config.history_items)
        bought = events[events[KIND] == PURCHASED]
        keep = [
            c.USER_ID,
            ITEM,
            TS,
            KIND,
            "weight",
            *(x for x in (c.DEVICE, c.COUNTRY) if x in events),
        ]
        past = pd.concat([last, bought])
        past = past[~past.index.duplicated()].sort_values([c.USER_ID, TS], kind="stable")
        self.past = past[keep].reset_index(drop=True)
        # every item each user ever touched: the categories whose affinity exists for them
        self.touched = events[[c.USER_ID, ITEM]].drop_duplicates().reset_index(drop=True)
        self.data_end = float(events[TS].max()) if len(events) else 0.0

    def source(self, name: str):
        return next(s for s in self.sources if s.name == name)

    # ---------------------------------------------------------------- catalogue
    def add_products(self, products: pd.DataFrame) -> int:
        """Bring products unknown at training into every source (content embeds them)."""
        before = len(self.catalog)
        rows = self.catalog.update(products)
        n_items = len(self.catalog)
        for source in self.sources:
            if isinstance(source, ContentSource):
                source.grow(self.catalog.facts, rows[rows >= before])
            else:
                source.grow(n_items)
        return n_items - before

    # ---------------------------------------------------------------- answering
    def _stored(self, name: str, users: np.ndarray) -> pd.DataFrame:
        """The rows of a stored per-user frame (``past``, ``touched``, ``segments``) that belong
        to ``users``, found by binary search on the frame's sorted user ids."""
        frame = getattr(self, name)
        keys = self._keys.get(name) if hasattr(self, "_keys") else None
        if keys is None or len(keys) != len(frame):
            frame = frame.sort_values(c.USER_ID, kind="stable").reset_index(drop=True)
            setattr(self, name, frame)
            keys = frame[c.USER_ID].astype(str).to_numpy(dtype=object)
            self.__dict__.setdefault("_keys", {})[name] = keys
        return frame.iloc[rows_of(keys, users)]

    def batch(self, requests: pd.DataFrame) -> Batch:
        """Requests (``user_id``, optional ``ts``, ``device``, ``country``, ``age``,
        ``gender``, ``session_item_ids``) with each user's stored past and live session."""
        reqs = requests.reset_index(drop=True).copy()
        reqs[c.USER_ID] = reqs[c.USER_ID].astype(str)
        if TS not in reqs:
            reqs[TS] = self.data_end + 1.0
        users = pd.unique(reqs[c.USER_ID].to_numpy(dtype=object))
        past = self._stored("past", users)
        if "session_item_ids" in reqs:
            rows = []
            for uid, ts, items in zip(
                reqs[c.USER_ID], reqs[TS], reqs["session_item_ids"], strict=True
            ):
                items = list(items) if items is not None else []
                for i, item in enumerate(items):
                    rows.append((uid, item, float(ts) - len(items) + i))
            if rows:
                extra = pd.DataFrame(rows, columns=[c.USER_ID, c.ITEM_ID, TS])
                extra[ITEM] = self.catalog.items.rows(extra[c.ITEM_ID])
                extra = extra[extra[ITEM] >= 0].drop(columns=c.ITEM_ID)
                extra[KIND], extra["weight"] = 0, self.config.events.view
                past = pd.concat([past, extra], ignore_index=True)
                past = past.sort_values([c.USER_ID, TS], kind="stable")
            reqs = reqs.drop(columns="session_item_ids")
        built = batch_from_events(
            reqs, past, pd.DataFrame({c.USER_ID: []}), self.users, self.config.history_items
        )
        requests = attach_segments(
            built.requests.drop(columns=["demo"], errors="ignore"), self._stored("segments", users)
        )
        if c.AGE in reqs or c.GENDER in reqs:  # demographics given with the request (a
            # profile newer than the model): they place a user the model never saw
            given = demo_segment(
                reqs.get(c.AGE, pd.Series(np.nan, index=reqs.index)),
                reqs.get(c.GENDER, pd.Series(None, index=reqs.index)),
            ).to_numpy()
            unknown = (requests["demo"] == UNKNOWN).to_numpy()
            requests.loc[unknown, "demo"] = given[requests[REQ].to_numpy()][unknown]
        known = requests[[REQ, c.USER_ID]].merge(self._stored("touched", users), on=c.USER_ID)
        touched = pd.concat([known[[REQ, ITEM]], built.touched]).drop_duplicates()
        return Batch(requests, built.history, built.bought, touched.reset_index(drop=True))

    def exclusions(self, batch: Batch, allowed: np.ndarray | None = None) -> Exclusions:
        return Exclusions(batch, self.catalog, self.allow_rebuy, allowed)

    def candidates(
        self,
        batch: Batch,
        sources: list | None = None,
        limit: int | None = None,
        allowed: np.ndarray | None = None,
    ) -> pd.DataFrame:
        return cand.generate(
            sources or self.sources,
            batch,
            self.exclusions(batch, allowed),
            limit or self.config.candidates,
        )

    def features(self, batch: Batch, pairs: pd.DataFrame, feature_source) -> pd.DataFrame:
        """Source features and stored features of each candidate, row-aligned with pairs."""
        described = cand.describe(self.sources, batch, pairs)
        stored = feature_source.fetch(batch, pairs, self.catalog)
        item_ids = pd.Series(self.catalog.items.ids[pairs[ITEM].to_numpy()], index=pairs.index)
        inputs = ranker_inputs(stored, item_ids)
        return pd.concat([described, inputs], axis=1)

    def recommend_batch(
        self,
        batch: Batch,
        k: int,
        feature_source,
        sources: list | None = None,
        allowed: np.ndarray | None = None,
        limit: int | None = None,
    ) -> pd.DataFrame:
        """Top ``k`` per request: ``req, rank, item, score`` and each source's ``<name>_rank``
        (the single answering path).

        ``allowed``: items the business rules leave (the service's filters); ``limit``: the
        number of candidates ranked per request (the model's configuration by default)."""
        out = []
        for start, part in batch.chunks(CHUNK):
            pairs = self.candidates(part, sources, limit, allowed)
            rank_cols = [col for col in pairs.columns if col.endswith("_rank")]
            if self.ranker is not None and sources is None and len(pairs):
                scores = self.ranker.score(self.features(part, pairs, feature_source))
                if self.cold_by_popularity and "popularity_rank" in pairs:
                    cold = ~pairs[REQ].isin(part.history[REQ].unique()).to_numpy()
                    scores = np.where(cold, -pairs["popularity_rank"].to_numpy(), scores)
            else:  # a single-source baseline: its own order
                scores = -pairs[rank_cols].min(axis=1).to_numpy(dtype=np.float64)
            # each source's rank stays with the item: the service's reasons come from them
            ranked = pairs[[REQ, ITEM, *rank_cols]].assign(score=scores)
            ranked = ranked.sort_values([REQ, "score"], ascending=[True, False], kind="stable")
            ranked = ranked.groupby(REQ, sort=False).head(k)
            ranked["rank"] = ranked.groupby(REQ, sort=False).cumcount() + 1
            ranked[REQ] += start
            out.append(ranked)
        return (
            pd.concat(out, ignore_index=True)
            if out
            else pd.DataFrame({REQ: [], "rank": [], ITEM: [], "score": []})
        )

    def recommend(self, requests: pd.DataFrame, k: int, feature_source) -> pd.DataFrame:
        """``user_id, rank, item_id, score`` for each request row (by user)."""
        batch = self.batch(requests)
        ranked = self.recommend_batch(batch, k, feature_source)
        users = batch.requests.set_index(REQ)[c.USER_ID]
        return pd.DataFrame(
            {
                c.USER_ID: users.loc[ranked[REQ].to_numpy()].to_numpy(),
                "rank": ranked["rank"].to_numpy(dtype=np.int64),
                c.ITEM_ID: self.catalog.items.ids[ranked[ITEM].to_numpy()],
                "score": ranked["score"].to_numpy(dtype=np.float64),
            }
        )

    # ---------------------------------------------------------------- storage
    def save(self, folder: Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / MODEL_FILE, "wb") as fh:
            pickle.dump(self, fh, protocol=pickle.HIGHEST_PROTOCOL)
        (folder / "config.json").write_text(self.config.model_dump_json(indent=2))
        (folder / "meta.json").write_text(json.dumps(self.meta, indent=2, default=str))
        return folder

    @staticmethod
    def load(folder: Path) -> "Recommender":
        with open(Path(folder) / MODEL_FILE, "rb") as fh:
            model = pickle.load(fh)
        if not isinstance(model, Recommender):
            raise TypeError(f"{folder} does not hold a Recommender")
        return model
