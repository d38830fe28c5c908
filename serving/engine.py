"""The request path: cache, online features, candidates, ranking, rules, reasons, feedback.

One ``Engine`` per worker process. It answers through ``Recommender.recommend_batch``, the
same method training evaluates and ``recsys recommend`` calls, with the online store as the
feature source. A dependency that fails degrades the answer instead of failing it: without
the online store the model ranks on its own data, without the cache every request is
computed, and feedback always reaches the durable log first.
"""

import gc
import logging
import os
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd
from redis.exceptions import RedisError

from recommender.features_source import NoFeatures, OnlineFeatures
from recommender.model import Recommender
from recommender.state import ITEM, TS
from recsys import columns as c
from recsys.workspace import Workspace
from serving import reasons
from serving.cache import (
    Breaker,
    MemoryCache,
    RedisCache,
    context_bucket,
    entry_key,
    precomputed_key,
)
from serving.loader import ModelFollower
from serving.rules import Rules, split_attributes
from serving.schemas import (
    FeedbackEvent,
    Filters,
    Item,
    RecommendRequest,
    RecommendResponse,
    RequestError,
    SimilarRequest,
)
from serving.settings import ServeConfig

logger = logging.getLogger(__name__)
# what a failing online store raises (Redis, SQLite, sockets); anything else is a bug, not
# a reason to degrade
STORE_ERRORS = (OSError, ConnectionError, TimeoutError, RedisError, sqlite3.Error)
# feedback kinds in the session's terms: a click is a view of the product page
SESSION_KIND = {"click": c.VIEW, "cart": c.CART, "purchase": c.PURCHASE}


def _single_threaded_ranker(model: Recommender) -> None:
    """Score on the request's own thread: training leaves the booster two OpenMP threads,
    which a request of 300 rows cannot use (the scores are the same with any number) and
    whose spinning costs the other worker CPU (0.6 ms a request on the full shop)."""
    booster = getattr(model.ranker, "booster", None)
    if booster is not None:
        booster.set_param({"nthread": 1})


def _freeze_heap() -> None:
    """Leave the objects alive now (the loaded model: some 400,000 tracked by the garbage
    collector) out of its full collections. Requests allocate enough for a full collection
    every thousand or so, and walking the model took 230 ms of one request on the full shop:
    a p99 of 230 ms at 40 requests a second, where requests otherwise take 13-18 ms.

    The previous freeze is undone first, so a model replaced since is collected now (a model
    swapped out stays frozen until the next load: at most one spare model's memory)."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


@dataclass
class Prepared:
    """A loaded model version and what serving builds around it."""

    version: str
    model: Recommender
    rules: Rules
    features: OnlineFeatures | None
    lock: threading.Lock


class Engine:
    def __init__(
        self,
        workspace: Workspace,
        settings: ServeConfig,
        feedback_log=None,
        background: bool = True,
    ) -> None:
        from recsys import tracking

        self.workspace, self.settings = workspace, settings
        tracking.use(workspace)
        self.store_breaker = Breaker(settings.retry_seconds)
        self.store, self.reader, self.updater = self._open_store()
        self.cache = self._open_cache()
        self.feedback_log = feedback_log or self._open_feedback()
        self.follower = ModelFollower(
            settings.model_name, settings.alias, self._prepare, settings.reload_seconds
        )
        self.follower.check()
        self._stop = threading.Event()
        if background:
            self.follower.start()
            threading.Thread(target=self._push_loop, name="session-push", daemon=True).start()

    # ------------------------------------------------------------------ set-up
    def _open_store(self):
        from features.environment import feast_environment
        from features.online import OnlineReader
        from features.push import SessionUpdater
        from features.store import open_store

        try:
            with feast_environment(self.workspace):
                store = open_store(self.workspace)
                reader = OnlineReader(store, timeout=self.settings.store_timeout)
            return store, reader, SessionUpdater(store, reader)
        except Exception as exc:
            logger.error("online store unavailable at start (%s): serving without it", exc)
            self.store_breaker.trip(exc)
            return None, None, None

    def _open_cache(self):
        if self.workspace.profile != "production":
            # a process's memory is shared by no other worker: with several, feedback to one
            # could not invalidate another's copy, so several workers cache nothing locally
            workers = int(os.environ.get("RECSYS_SERVE_WORKERS", "1"))
            return MemoryCache(
                self.settings.cache_ttl if workers == 1 else 0.0,
                max_users=1 if workers > 1 else 100_000,
            )
        from features.environment import setting

        return RedisCache.connect(
            setting("RECSYS_REDIS_HOST"),
            int(setting("RECSYS_REDIS_PORT")),
            int(setting("RECSYS_REDIS_DB")),
            timeout=self.settings.store_timeout,
            ttl=self.settings.cache_ttl,
            retry_seconds=self.settings.retry_seconds,
        )

    def _open_feedback(self):
        from serving.feedback import FeedbackLog, database_url

        return FeedbackLog(database_url(self.workspace), self.workspace.home / "serving" / "spool")

    def _prepare(self, version: str, model: Recommender) -> Prepared:
        # product rows do not depend on the model: the serving version's are kept
        serving = self.follower.current
        features = (
            serving.state.features
            if serving is not None and serving.state.features is not None
            else OnlineFeatures(self.reader, self.settings.item_ttl)
            if self.reader is not None
            else None
        )
        prepared = Prepared(version, model, Rules(model.catalog), features, threading.Lock())
        # index the stored histories now, not on the first request
        for name in ("past", "touched", "segments"):
            model._stored(name, np.array(["warm-up"], dtype=object))
        _single_threaded_ranker(model)
        self._warm_up(prepared)
        _freeze_heap()
        return prepared

    def _warm_up(self, state: Prepared) -> None:
        """Answer a known and an unknown user with the new version before it is swapped in:
        what is built on a version's first request (distinct content rows, the summed
        co-visitation matrix, ...) is then not built while requests queue behind it."""
        users = state.model.users.ids
        for user_id in ([str(users[0])] if len(users) else []) + ["warm-up-unknown-user"]:
            try:
                self._compute(state, RecommendRequest(user_id=user_id, k=10), time.time())
            except Exception as exc:  # a warm-up is an optimisation, never a reason to refuse
                logger.warning("warm-up of version %s failed: %s", state.version, exc)

    @property
    def current(self) -> Prepared:
        loaded = self.follower.current
        if loaded is None:
            raise RuntimeError(
                f"no model: {self.settings.model_name}@{self.settings.alias} "
                f"could not be loaded ({self.follower.last_error})"
            )
        return loaded.state

    @property
    def ready(self) -> bool:
        return self.follower.current is not None

    # ------------------------------------------------------------------ online store
    def _online_user(self, user_id: str):
        """The user's stored features and session (an ``OnlineRead``), or why they are
        missing."""
        if self.reader is None:
            return None, "online store unavailable at start"
        if not self.store_breaker.closed:
            return None, f"online store unavailable ({self.store_breaker.last_error})"
        # the user alone, without a frame of no products (a reader may only have ``read``)
        read_user = getattr(self.reader, "read_user", None)
        try:
            if read_user is not None:
                return read_user(user_id), None
            return self.reader.read(user_id, [], []), None
        except Exception as exc:
            self._store_failed(exc)
            return None, f"online store unavailable ({type(exc).__name__})"

    def _store_failed(self, exc: BaseException) -> None:
        if self.store_breaker.closed:
            logger.warning("online store failed (%s); degrading for a while", exc)
        self.store_breaker.trip(exc)

    # ------------------------------------------------------------------ /recommend
    def recommend(self, request: RecommendRequest) -> RecommendResponse:
        started = time.perf_counter()
        state = self.current
        request_id = uuid.uuid4().hex
        ts = (request.context.timestamp or datetime.now(UTC)).timestamp()
        key = entry_key(
            state.version,
            context_bucket(ts, request.context.device, request.context.country),
            {
                "k": request.k,
                "filters": request.filters.model_dump(),
                "session": request.session_item_ids,
            },
        )
        # a plain request (no filters, no session items) may take the list computed ahead
        plain = request.filters == Filters() and not request.session_item_ids
        keys = (key, precomputed_key(state.version)) if plain else (key,)
        hit = self.cache.get(request.user_id, *keys)
        # (a precomputed list answers only requests for at most as many items as it holds)
        if hit is not None and hit.get("k", request.k) >= request.k:
            response = RecommendResponse(
                items=[Item(**item) for item in hit["items"][: request.k]],
                model_version=state.version,
                variant="production",
                request_id=request_id,
                fallback=None,
                cached=True,
            )
            self._log(response, "recommend", request.user_id, started)
            return response

        items, fallback = self._compute(state, request, ts)
        response = RecommendResponse(
            items=items,
            model_version=state.version,
            variant="production",
            request_id=request_id,
            fallback=fallback,
        )
        if fallback is None:
            self.cache.put(request.user_id, key, {"items": [i.model_dump() for i in items]})
        self._log(response, "recommend", request.user_id, started)
        return response

    def _compute(
        self, state: Prepared, request: RecommendRequest, ts: float
    ) -> tuple[list[Item], str | None]:
        """The request path without the cache: online features, candidates under the rules,
        ranking, reasons; the fallback says what was missing."""
        read, fallback = self._online_user(request.user_id)
        user = read.user if read is not None else {}
        session = list(request.session_item_ids)
        if read is not None and read.session is not None:
            # the stored session lists the newest first; the model wants oldest first
            session = [i for i in reversed(read.session.items) if i not in session] + session
        frame = pd.DataFrame(
            {
                c.USER_ID: [request.user_id],
                TS: [float(ts)],
                c.DEVICE: [request.context.device],
                c.COUNTRY: [request.context.country or user.get("country")],
                "session_item_ids": [session],
                c.AGE: [user.get("age")],
                c.GENDER: [user.get("gender")],
            }
        )
        filters = request.filters
        avoid = [*filters.avoid_attributes, *split_attributes(user.get("avoid_attributes"))]
        allowed = state.rules.mask(
            filters.exclude_item_ids, filters.category, filters.max_price, avoid
        )
        model = state.model
        batch = model.batch(frame)
        source = state.features if fallback is None and state.features is not None else NoFeatures()
        try:
            ranked = model.recommend_batch(
                batch, request.k, source, allowed=allowed, limit=self.settings.candidates
            )
        except STORE_ERRORS as exc:
            if isinstance(source, NoFeatures):
                raise
            self._store_failed(exc)
            fallback = f"online store unavailable ({type(exc).__name__})"
            ranked = model.recommend_batch(
                batch, request.k, NoFeatures(), allowed=allowed, limit=self.settings.candidates
            )
        if fallback is not None:
            fallback += ": ranked on the model's own data"
        return self._items(model, ranked, reasons.explain(model, batch, ranked)), fallback

    def precompute(self, user_ids: list[str], k: int, ttl: float) -> dict[str, int]:
        """Compute plain lists (no context, filters or session) for ``user_ids`` ahead of
        their requests and keep them in the cache for ``ttl`` seconds; a user's feedback
        drops theirs with the rest of their cached lists. Lists computed without the online
        store are not kept."""
        state = self.current
        counts = {"stored": 0, "skipped": 0}
        for n, user_id in enumerate(user_ids, 1):
            request = RecommendRequest(user_id=user_id, k=k)
            items, fallback = self._compute(state, request, time.time())
            if fallback is None:
                payload = {"items": [i.model_dump() for i in items], "k": k}
                self.cache.put(user_id, precomputed_key(state.version), payload, ttl=ttl)
                counts["stored"] += 1
            else:
                counts["skipped"] += 1
            if n % 1_000 == 0 or n == len(user_ids):
                logger.info(
                    "precomputed %d/%d users (%d skipped)", n, len(user_ids), counts["skipped"]
                )
        return counts

    @staticmethod
    def _items(model: Recommender, ranked: pd.DataFrame, why: list[str]) -> list[Item]:
        ids = model.catalog.items.ids[ranked[ITEM].to_numpy(dtype=np.int64)]
        return [
            Item(item_id=str(i), score=round(float(s), 6), reason=r)
            for i, s, r in zip(ids, ranked["score"].to_numpy(), why, strict=True)
        ]

    # ------------------------------------------------------------------ /similar_items
    def _product_row(self, state: Prepared, item_id: str) -> int:
        """The item's row; a product the model never saw is read from the online store's
        catalogue and embedded by the content source (new products)."""
        row = int(state.model.catalog.items.rows([item_id])[0])
        if row >= 0:
            return row
        if self.reader is None or not self.store_breaker.closed:
            raise RequestError(
                ("item_id",), f"item_id {item_id!r} is unknown (and the catalogue is unreachable)"
            )
        try:
            read = self.reader.read("", [item_id], [])
        except Exception as exc:
            self._store_failed(exc)
            raise RequestError(
                ("item_id",), f"item_id {item_id!r} is unknown to the model"
            ) from None
        if read.missing_items:
            raise RequestError(("item_id",), f"item_id {item_id!r} is not in the catalogue")
        product = read.items.iloc[0]
        created = product.get("created_epoch")
        new = pd.DataFrame(
            {
                c.ITEM_ID: [item_id],
                c.CATEGORY: [product.get("category")],
                c.BRAND: [product.get("brand")],
                c.ATTRIBUTES: [product.get("attributes")],
                c.PRICE: [product.get("price")],
                c.CREATED_AT: [pd.to_datetime(created, unit="s", utc=True) if created else None],
                c.IN_STOCK: [bool(product.get("in_stock", True))],
            }
        )
        with state.lock:
            if state.model.catalog.items.rows([item_id])[0] < 0:
                state.model.add_products(new)
                state.rules = Rules(state.model.catalog)
                logger.info("new product %s added to model version %s", item_id, state.version)
        return int(state.model.catalog.items.rows([item_id])[0])

    def similar(self, request: SimilarRequest) -> RecommendResponse:
        started = time.perf_counter()
        state = self.current
        model = state.model
        row = self._product_row(state, request.item_id)
        filters = request.filters
        allowed = state.rules.mask(
            [*filters.exclude_item_ids, request.item_id],
            filters.category,
            filters.max_price,
            filters.avoid_attributes,
        )
        allowed &= model.catalog.created <= time.time()
        content = model.source("content")
        score = np.zeros(len(model.catalog), dtype=np.float64)
        by = np.full(len(model.catalog), "content", dtype=object)
        if row < len(content.embeddings):
            sims = content.similar(np.array([row]))[0]
            score[: len(sims)] = np.maximum(sims, 0)
        try:
            covisit = model.source("covisit").neighbours(row)
        except (StopIteration, IndexError):
            covisit = pd.Series(dtype=np.float64)
        if len(covisit):
            share = (covisit / covisit.max()).to_numpy()
            at = covisit.index.to_numpy()
            score[at] += 2.0 * share
            by[at] = "covisit"
        score[~allowed[: len(score)]] = -np.inf
        top = np.argsort(-score, kind="stable")[: request.k]
        top = top[np.isfinite(score[top]) & (score[top] > 0)]
        ids = model.catalog.items.ids
        items = [
            Item(
                item_id=str(ids[i]),
                score=round(float(score[i]), 6),
                reason=reasons.similar_reason(model, row, by[i]),
            )
            for i in top
        ]
        response = RecommendResponse(
            items=items,
            model_version=state.version,
            variant="production",
            request_id=uuid.uuid4().hex,
        )
        self._log(response, "similar_items", request.user_id, started)
        return response

    # ------------------------------------------------------------------ /feedback
    def feedback(self, events: list[FeedbackEvent]) -> dict[str, object]:
        """Durable log first, then the online session and the cache; a failing store leaves
        the session update pending (retried in the background), never the event lost."""
        now = datetime.now(UTC)
        rows = [
            {
                "event_uid": uuid.uuid4().hex,
                "request_id": e.request_id,
                "user_id": e.user_id,
                "item_id": e.item_id,
                "event_type": e.event_type,
                "event_ts": e.timestamp or now,
                "session_id": e.session_id,
                "price": e.price,
            }
            for e in events
        ]
        accepted = self.feedback_log.append(rows)
        pushed = self.push_pending()
        for user in {e.user_id for e in events}:
            self.cache.invalidate(user)
        return {"accepted": accepted, "sessions_updated": pushed}

    def push_pending(self) -> int:
        """Fold logged events not yet in the online session into it; returns users updated."""
        if self.updater is None or not self.store_breaker.closed:
            return 0
        from features.push import SessionEvent

        try:
            pending = self.feedback_log.pending_sessions()
        except Exception as exc:
            logger.warning("feedback log unreadable (%s)", exc)
            return 0
        if not pending:
            return 0
        events = [
            SessionEvent(
                user_id=p["user_id"],
                item_id=p["item_id"],
                event_type=SESSION_KIND[p["event_type"]],
                epoch=int(pd.Timestamp(p["event_ts"]).timestamp()),
                session_id=p.get("session_id"),
            )
            for p in pending
        ]
        try:
            updated = self.updater.push(events)
        except Exception as exc:
            self._store_failed(exc)
            return 0
        self.feedback_log.mark_pushed([p["id"] for p in pending])
        for user in {p["user_id"] for p in pending}:
            self.cache.invalidate(user)
        return updated

    def _push_loop(self) -> None:
        while not self._stop.wait(self.settings.push_seconds):
            try:
                self.feedback_log.flush_spool()
                self.push_pending()
            except Exception as exc:
                logger.warning("background feedback work failed: %s", exc)

    # ------------------------------------------------------------------ bookkeeping
    def _log(self, response: RecommendResponse, endpoint: str, user_id, started: float) -> None:
        latency = (time.perf_counter() - started) * 1000
        self.feedback_log.log_served(
            {
                "request_id": response.request_id,
                "served_at": datetime.now(UTC),
                "endpoint": endpoint,
                "user_id": user_id,
                "model_version": response.model_version,
                "variant": response.variant,
                "item_ids": [i.item_id for i in response.items],
                "scores": [i.score for i in response.items],
                "fallback": response.fallback,
                "cached": response.cached,
                "latency_ms": latency,
            }
        )

    def health(self) -> dict[str, object]:
        loaded = self.follower.current
        return {
            "model_version": loaded.version if loaded else None,
            "alias": self.settings.alias,
            "online_store": self._store_up(),
            "cache": self.cache.healthy,
            "last_error": self.follower.last_error or self.store_breaker.last_error,
        }

    def _store_up(self) -> bool:
        if self.reader is None or not self.store_breaker.closed:
            return False
        if self.reader.ping():
            return True
        self._store_failed(ConnectionError("online store did not answer a ping"))
        return False

    def close(self) -> None:
        self._stop.set()
        self.follower.stop()
        self.feedback_log.close()
