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
from recommender.features_source import stored_columns
from recommender.ranker import Ranker
from recommender.segments import batch_segments
from recommender.sources.als import AlsSource
from recommender.sources.content import ContentSource
from recommender.sources.covisit import CovisitSource
from recommender.sources.popularity import PopularitySource
from recommender.sources.repeat import RepeatSource
from recommender.sources.sknn import SESSION_GAP_SECONDS, SessionKnnSource
from recommender.state import (
    ITEM,
    KIND,
    PURCHASED,
    REQ,
    TS,
    UNKNOWN,
    Batch,
    Exclusions,
    as_text,
    assemble,
    demo_segment,
    group_positions,
    order_by_request_and_score,
    request_columns,
    requests_with_past,
    rows_by_request,
    rows_of,
    session_events,
    user_segments,
)
from recommender.stored import ranker_frame, ranker_input_columns
from recsys import columns as c

logger = logging.getLogger(__name__)
MODEL_FILE = "recommender.pkl"
CHUNK = 2_000
# below float32 resolution of a ranker score near 1 (1.2e-7) even at the 300th candidate
TIE_STEP = 1e-10
LAST = -1e9  # the score of a candidate a simple order has nothing to say about (finite: JSON)
NO_PROFILES = {name: np.zeros(0, dtype=object) for name in (c.USER_ID, "demo", "user_country")}


def order_scores(order: str, pairs: pd.DataFrame, inputs: pd.DataFrame) -> np.ndarray:
    """The scores of a simple order over a request's candidates: a source's own (its rank,
    negated: what it did not propose comes last), or one ranker input, higher first (the
    successor of the last item ``covisit_follow_last``, item-KNN ``covisit_knn``; a missing
    value last)."""
    if f"{order}_rank" in pairs:
        return -pairs[f"{order}_rank"].to_numpy(dtype=np.float64)
    if order in inputs:
        values = inputs[order].to_numpy(dtype=np.float64)
        return np.where(np.isnan(values), LAST, values)
    return np.full(len(pairs), LAST)


def typical_click_gap(events: pd.DataFrame) -> float:
    """The median pause, in whole seconds (at least 1), between consecutive events of a user
    less than half an hour apart (one session's clicks), in an event frame sorted by user
    and time; 1 where there are none."""
    users = events[c.USER_ID].to_numpy()
    ts = events[TS].to_numpy(dtype=np.float64)
    if len(ts) < 2:
        return 1.0
    gap = np.diff(ts)
    inside = (users[1:] == users[:-1]) & (gap > 0) & (gap <= SESSION_GAP_SECONDS)
    return float(max(1.0, np.round(np.median(gap[inside])))) if inside.any() else 1.0


def _column(values: list) -> np.ndarray:
    """A request column as a frame would hold it: numbers as numbers, text (and missing
    values alone) as objects."""
    array = np.asarray(values)
    return array if array.dtype.kind in "biuf" else np.asarray(values, dtype=object)


class Recommender:
    # the typical pause between two clicks of a session, which spaces a given session's
    # clicks (set by ``remember``; the class default serves a version pickled before it)
    click_seconds = 1.0

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
        # user segments served by one source's own order, where validation found it better
        # than the ranker beyond noise (see training.segment_orders)
        self.segment_orders: dict[str, str] = {}
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
        wanted = only or ("als", "covisit", "sknn", "content", "popularity", "repeat")
        for name in wanted:
            if name == "als":
                source = AlsSource(config.als, config.seed)
                source.fit(events, user_rows, n_users, n_items)
            elif name == "covisit":
                source = CovisitSource(config.covisit)
                source.fit(events, user_rows, n_users, n_items)
            elif name == "sknn":
                source = SessionKnnSource(config.sknn)
                source.fit(events, user_rows, n_items)
            elif name == "content":
                source = ContentSource(config.content, config.seed)
                source.fit(catalog.facts)
            elif name == "popularity":
                source = PopularitySource(config.popularity)
                facts = catalog.facts
                source.fit(
                    events,
                    model.segments,
                    n_items,
                    facts[c.CATEGORY].to_numpy(),
                    facts[c.ATTRIBUTES].to_numpy() if c.ATTRIBUTES in facts else None,
                )
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
        self.click_seconds = typical_click_gap(events)

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

    def touched_categories(self, user_id: str) -> list[str]:
        """The categories of every item the user touched in the model's data: those whose
        user-category affinity the online store can hold, read with the user's own row."""
        keys = self.__dict__.get("_keys", {}).get("touched")
        if keys is None or len(keys) != len(self.touched):
            self._stored("touched", np.array([], dtype=object))
            keys = self._keys["touched"]
        rows = rows_of(keys, np.array([user_id], dtype=object))
        items = self.touched[ITEM].to_numpy()[rows]
        cats = self.catalog.facts[c.CATEGORY].to_numpy(dtype=object)[items]
        return sorted({x for x in cats if isinstance(x, str) and x})

    def batch(self, requests: pd.DataFrame | dict[str, list]) -> Batch:
        """Requests (``user_id``, optional ``ts``, ``device``, ``country``, ``age``,
        ``gender``, ``session_item_ids``), as a frame or as columns (the service's single
        request: no frame to build and take apart), with each user's stored past and live
        session.

        A request's session is its own: two requests of one user in a batch do not see each
        other's sessions (a batch answers each request as if it came alone)."""
        if isinstance(requests, dict):
            columns = {
                # (a session is a list per request, not an array of items)
                name: list(values) if name == "session_item_ids" else _column(values)
                for name, values in requests.items()
            }
        else:
            columns = request_columns(requests)
        columns[c.USER_ID] = as_text(columns[c.USER_ID])
        if TS not in columns:
            columns[TS] = np.full(len(columns[c.USER_ID]), self.data_end + 1.0)
        users = pd.unique(columns[c.USER_ID])
        sessions = columns.pop("session_item_ids", None)
        extra = None
        if sessions is not None:
            at = np.asarray(columns[TS])
            extra = session_events(
                at, sessions, self.catalog.items, self.config.events.view, self.click_seconds
            )

        def keys(name: str) -> np.ndarray:
            """The user ids of a stored per-user frame, which ``_stored`` sorts once (an
            empty frame too: a shop without a users table stores no profiles)."""
            known = self.__dict__.get("_keys", {}).get(name)
            if known is None or len(known) != len(getattr(self, name)):
                self._stored(name, users[:0])
            return self._keys[name]

        def stored(name: str) -> dict[str, np.ndarray]:
            """The batch's users' rows of a stored per-user frame, as columns (found by
            binary search: no frame is built)."""
            rows = rows_of(keys(name), users)
            frame = getattr(self, name)
            return {column: frame[column].to_numpy()[rows] for column in frame.columns}

        columns, past = requests_with_past(columns, stored("past"), self.users, extra)
        # every item the user ever touched (stored), before those of the batch's own past
        reqs, rows = rows_by_request(keys("touched"), columns[c.USER_ID])
        touched = (reqs, self.touched[ITEM].to_numpy()[rows])
        # the request's own device and country, else its last event's, else unknown; the
        # stored profile gives the demographic segment
        profiles = [NO_PROFILES, stored("segments")]
        built = assemble(columns, past, profiles, self.config.history_items, touched)
        requests = built.requests
        if c.AGE in requests or c.GENDER in requests:  # demographics given with the request (a
            # profile newer than the model): they place a user the model never saw
            demo = requests["demo"].to_numpy()
            unknown = demo == UNKNOWN
            if unknown.any():
                given = demo_segment(
                    requests.get(c.AGE, pd.Series(np.nan, index=requests.index)),
                    requests.get(c.GENDER, pd.Series(None, index=requests.index)),
                ).to_numpy()
                requests["demo"] = np.where(unknown, given, demo)
        return built

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

    def features(
        self, batch: Batch, pairs: pd.DataFrame, feature_source, only: list[str] | None = None
    ) -> pd.DataFrame:
        """Source features and stored features of each candidate, row-aligned with pairs;
        ``only``: just these columns, as the ranker takes them (one float32 block)."""
        columns = cand.describe_columns(self.sources, batch, pairs)
        stored = stored_columns(feature_source, batch, pairs, self.catalog)
        item_ids = self.catalog.items.ids[pairs[ITEM].to_numpy()]
        columns.update(ranker_input_columns(stored, item_ids))
        if only is not None:
            return ranker_frame(columns, only, pairs.index)
        return pd.DataFrame(columns, index=pairs.index)

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
            with part.reusing():  # the scores that propose candidates also describe them
                pairs = self.candidates(part, sources, limit, allowed)
                rank_cols = [col for col in pairs.columns if col.endswith("_rank")]
                reqs = pairs[REQ].to_numpy()
                if self.ranker is not None and sources is None and len(pairs):
                    names = self.ranker.feature_names
                    inputs = self.features(part, pairs, feature_source, names)
                    scores = self.ranker.score(inputs)
                    if self.cold_by_popularity and "popularity_rank" in pairs:
                        has_past = np.zeros(len(part), dtype=bool)
                        has_past[part.history[REQ].to_numpy()] = True
                        cold = ~has_past[reqs]
                        scores = np.where(cold, -pairs["popularity_rank"].to_numpy(), scores)
                    scores = self._segment_scores(part, pairs, inputs, scores)
                    # candidates the ranker cannot tell apart (the same leaf in every tree)
                    # keep the sources' order, and the scores say so: no two are equal
                    position = group_positions(reqs)[0]
                    scores = np.asarray(scores, dtype=np.float64) - TIE_STEP * position
                else:  # a single-source baseline: its own order
                    ranks = pairs[rank_cols].to_numpy(dtype=np.float64)
                    scores = -(ranks.min(axis=1) if rank_cols else np.full(len(pairs), np.nan))
            order = order_by_request_and_score(reqs, scores)
            position = group_positions(reqs[order])[0]
            top = order[position < k]
            # each source's rank stays with the item: the service's reasons come from them
            ranked = {REQ: reqs[top] + start, ITEM: pairs[ITEM].to_numpy()[top]}
            ranked.update((col, pairs[col].to_numpy()[top]) for col in rank_cols)
            ranked["score"] = scores[top]
            ranked["rank"] = position[position < k] + 1
            out.append(pd.DataFrame(ranked, copy=False))  # (fresh arrays: no copy needed)
        if not out:
            return pd.DataFrame({REQ: [], "rank": [], ITEM: [], "score": []})
        return out[0] if len(out) == 1 else pd.concat(out, ignore_index=True)

    def _segment_scores(
        self, part: Batch, pairs: pd.DataFrame, inputs: pd.DataFrame, scores: np.ndarray
    ) -> np.ndarray:
        """The ranker's scores, with the requests of a segment served by a simple order
        replaced by that order's (``order_scores``)."""
        orders = self.__dict__.get("segment_orders")  # (absent from older pickles)
        if not orders:
            return scores
        segment = batch_segments(part)[pairs[REQ].to_numpy()]
        for name, order in orders.items():
            mine = segment == name
            if mine.any():
                scores = np.where(mine, order_scores(order, pairs, inputs), scores)
        return scores

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
