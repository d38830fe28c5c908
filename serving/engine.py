"""The request path: cache, online features, candidates, ranking, rules, reasons, feedback.

One ``Engine`` per worker process. It answers through ``Recommender.recommend_batch``, the
same method training evaluates and ``recsys recommend`` calls, with the online store as the
feature source. A dependency that fails degrades the answer instead of failing it: without
the online store the model ranks on its own data, without the cache every request is
computed, and feedback always reaches the durable log first.
"""

import gc
import logging
import math
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

import numpy as np
import pandas as pd
from redis.exceptions import RedisError

from features.session import fold_given
from recommender.features_source import NoFeatures, OnlineFeatures
from recommender.model import Recommender
from recommender.state import ITEM, TS
from recsys import columns as c
from recsys.workspace import Workspace
from serving import reasons, split
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
    within_window,
)
from serving.settings import ServeConfig

logger = logging.getLogger(__name__)
# what a failing online store raises (Redis, SQLite, sockets); anything else is a bug, not
# a reason to degrade
STORE_ERRORS = (OSError, ConnectionError, TimeoutError, RedisError, sqlite3.Error)
# products per background read of their rows: a short read (some 10 ms) under the request
# path's store timeout, so it does not hold the worker's other threads
PRODUCT_CHUNK = 250
# feedback kinds in the session's terms: a click is a view of the product page
SESSION_KIND = {"click": c.VIEW, "cart": c.CART, "purchase": c.PURCHASE}
# answers remembered per worker to stamp their feedback with variant and version (~20 MB)
RECENT_ANSWERS = 100_000


class InjectedFault(RuntimeError):
    """The error a canary version's fault tags asked for (serving.split.fault_of)."""


def _session_event(row: dict):
    """A logged feedback row as the session push takes it, or None when its instant is one
    no session can hold (rows stored before the HTTP boundary checked the window)."""
    from features.push import SessionEvent

    try:
        stamp = pd.Timestamp(row["event_ts"])
    except (ValueError, OverflowError, TypeError):
        return None
    stamp = stamp.tz_localize(UTC) if stamp.tzinfo is None else stamp
    if not within_window(stamp):
        return None
    return SessionEvent(
        user_id=row["user_id"],
        item_id=row["item_id"],
        event_type=SESSION_KIND[row["event_type"]],
        epoch=int(stamp.timestamp()),
        session_id=row.get("session_id"),
    )


def _inject(fault: tuple[float, float]) -> None:
    """Delay, and maybe fail, a canary request as its version's fault tags say: the honest
    stand-in for a slow or failing candidate in tests and demonstrations (off unless the
    service runs with RECSYS_SERVE_FAULT_INJECTION=true)."""
    import random

    delay, rate = fault
    if delay > 0:
        time.sleep(delay)
    if rate > 0 and random.random() < rate:
        raise InjectedFault(f"fault injected by the canary version's tags (rate {rate:g})")


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


class RequestInputs(NamedTuple):
    """One ``/recommend`` as the model takes it (``Engine.request_inputs``)."""

    columns: dict[str, list]
    allowed: np.ndarray
    source: object
    fallback: str | None


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
        self._serving = False  # set once start-up is over: later loads pause between steps
        tracking.use(workspace)
        self.store_breaker = Breaker(settings.retry_seconds)
        self.store, self.reader, self.updater = self._open_store()
        self.cache = self._open_cache()
        self.feedback_log = feedback_log or self._open_feedback()
        self.follower = ModelFollower(
            settings.model_name, settings.alias, self._prepare, settings.reload_seconds
        )
        self.follower.check()
        # the canary: a second follower whose version answers a user-sticky share (serving.split)
        self.canary: ModelFollower | None = None
        if settings.canary_alias and settings.canary_alias != settings.alias:
            self.canary = ModelFollower(
                settings.model_name,
                settings.canary_alias,
                self._prepare,
                settings.reload_seconds,
                optional=True,
            )
            self.canary.check()
        # (the canary follower's tags, version, weight, salt, fault) as last read by _pick
        self._split_of: tuple = (None, None, 0.0, "", None)
        # request id -> (variant, model version) of recent answers, stamped on their feedback
        self._recent: dict[str, tuple[str, str]] = {}
        self._recent_lock = threading.Lock()
        self._stop = threading.Event()
        self._serving = True
        if background:
            self.follower.start()
            if self.canary is not None:
                self.canary.start()
            threading.Thread(target=self._push_loop, name="session-push", daemon=True).start()
            threading.Thread(target=self._product_loop, name="product-refresh", daemon=True).start()

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
        # each step below (and the unpickling before) holds Python's lock for up to a second
        # at a time; beside a serving version, a pause after each lets the requests queued
        # behind it be answered before the next (at 100 requests/s the steps back to back
        # held requests past a client's 2 s)
        pause = self.settings.reload_pause if self._serving else 0.0
        time.sleep(pause)
        prepared = Prepared(version, model, Rules(model.catalog), features, threading.Lock())
        if features is not None and features.item_ttl > 0:  # products held before requests
            ids = model.catalog.items.ids
            self._read_products(
                lambda: features.refresh(ids, features.item_ttl, chunk=PRODUCT_CHUNK)
            )
        # index the stored histories now, not on the first request
        for name in ("past", "touched", "segments"):
            model._stored(name, np.array(["warm-up"], dtype=object))
            time.sleep(pause)
        _single_threaded_ranker(model)
        self._warm_up(prepared)
        time.sleep(pause)
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
    def _online_user(self, user_id: str, categories: list[str] | tuple[str, ...] = ()):
        """The user's stored features, session and affinities to ``categories`` (an
        ``OnlineRead``), or why they are missing."""
        if self.reader is None:
            return None, "online store unavailable at start"
        if not self.store_breaker.closed:
            return None, f"online store unavailable ({self.store_breaker.last_error})"
        # the user alone, without a frame of no products (a reader may only have ``read``)
        read_user = getattr(self.reader, "read_user", None)
        try:
            if read_user is not None:
                return read_user(user_id, categories), None
            return self.reader.read(user_id, [], list(categories)), None
        except Exception as exc:
            self._store_failed(exc)
            return None, f"online store unavailable ({type(exc).__name__})"

    def _store_failed(self, exc: BaseException) -> None:
        if self.store_breaker.closed:
            logger.warning("online store failed (%s); degrading for a while", exc)
        self.store_breaker.trip(exc)

    # ------------------------------------------------------------------ /recommend
    def _pick(self, user_id: str | None) -> tuple[Prepared, str, tuple[float, float] | None]:
        """The variant that answers ``user_id``: the canary's state when the canary alias is
        loaded with a weight and the user's bucket is below it, else production's; with the
        canary's fault injection (``serving.split.fault_of``) when it applies."""
        follower = self.canary
        if follower is not None and user_id is not None:
            loaded = follower.current
            meta = follower.tags
            split_of = self._split_of
            if split_of[0] is not meta:  # the tags changed (read once per check, not per request)
                version, tags = meta
                fault = split.fault_of(tags) if self.settings.fault_injection else None
                salt = split.split_salt(self.settings.split_salt, version or "")
                split_of = self._split_of = (meta, version, split.weight_of(tags), salt, fault)
            _, version, weight, salt, fault = split_of
            if (
                loaded is not None
                and version == loaded.version
                and weight > 0
                and split.bucket(user_id, salt) < weight
            ):
                return loaded.state, split.CANARY, fault
        return self.current, split.PRODUCTION, None

    def recommend(self, request: RecommendRequest) -> RecommendResponse:
        started = time.perf_counter()
        state, variant, fault = self._pick(request.user_id)
        try:
            if fault is not None:
                _inject(fault)
            return self._recommend(request, state, variant, started)
        except RequestError:
            raise
        except Exception as exc:
            self._log_error("recommend", request.user_id, state, variant, started, exc)
            raise

    def _recommend(
        self, request: RecommendRequest, state: Prepared, variant: str, started: float
    ) -> RecommendResponse:
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
                variant=variant,
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
            variant=variant,
            request_id=request_id,
            fallback=fallback,
        )
        if fallback is None:
            self.cache.put(request.user_id, key, {"items": [i.model_dump() for i in items]})
        self._log(response, "recommend", request.user_id, started)
        return response

    def request_inputs(
        self, state: Prepared, request: RecommendRequest, ts: float
    ) -> RequestInputs:
        """What the model needs of one ``/recommend``: its batch columns (one row), the items
        the rules leave, its online features, and what was missing (``fallback``). Shared with
        the session benchmark, which answers many requests in one batch exactly as here."""
        # the affinities the user can have come with the user's row: with the products
        # held in-process, ranking then needs no second read
        categories = state.model.touched_categories(request.user_id)
        read, fallback = self._online_user(request.user_id, categories)
        user = read.user if read is not None else {}
        # the live session: the stored one with the request's own items folded in as
        # /feedback folds clicks, so given items and the same clicks told to /feedback are
        # one session to the model (its items) and to the ranker (its stored features)
        live = fold_given(
            read.session if read is not None else None,
            request.user_id,
            request.session_item_ids,
            ts,
            state.model.click_seconds,
        )
        session = live.items[::-1] if live is not None else []  # (the model's: oldest first)
        if live is not None and read is not None:
            user = {**user, **live.as_row()}
        columns = {  # (the batch's columns: one request needs no frame)
            c.USER_ID: [request.user_id],
            TS: [float(ts)],
            c.DEVICE: [request.context.device],
            c.COUNTRY: [request.context.country or user.get("country")],
            "session_item_ids": [session],
            c.AGE: [user.get("age")],
            c.GENDER: [user.get("gender")],
        }
        filters = request.filters
        avoid = [*filters.avoid_attributes, *split_attributes(user.get("avoid_attributes"))]
        allowed = state.rules.mask(
            filters.exclude_item_ids, filters.category, filters.max_price, avoid
        )
        source = (
            state.features.prefetched(user, read.affinity, categories)
            if fallback is None and state.features is not None
            else NoFeatures()
        )
        return RequestInputs(columns, allowed, source, fallback)

    def _compute(
        self, state: Prepared, request: RecommendRequest, ts: float
    ) -> tuple[list[Item], str | None]:
        """The request path without the cache: online features, candidates under the rules,
        ranking, reasons; the fallback says what was missing."""
        columns, allowed, source, fallback = self.request_inputs(state, request, ts)
        model = state.model
        batch = model.batch(columns)
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
        if not self.cache.flush(timeout=60.0):
            logger.warning("precompute: some lists were still unsent to the cache after 60 s")
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
        state, variant, _ = self._pick(request.user_id)  # (faults are /recommend's only)
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
            variant=variant,
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
                # the answer's variant and version when this worker served it (else the
                # canary analysis finds them in the served log by request id)
                **self._served_as(e.request_id),
            }
            for e in events
        ]
        accepted = self.feedback_log.append(rows)
        pushed = self.push_pending()
        for user in {e.user_id for e in events}:
            self.cache.invalidate(user)
        return {"accepted": accepted, "sessions_updated": pushed}

    def push_pending(self) -> int:
        """Fold logged events not yet in the online session into it; returns users updated.

        A row the store cannot take (a timestamp out of range, a value it refuses) is
        quarantined with its reason and skipped: one bad row never blocks the others, and
        it is not taken for an online-store outage."""
        if self.updater is None or not self.store_breaker.closed:
            return 0
        try:
            pending = self.feedback_log.pending_sessions()
        except Exception as exc:
            logger.warning("feedback log unreadable (%s)", exc)
            return 0
        if not pending:
            return 0
        events, rows = [], []
        for row in pending:
            event = _session_event(row)
            if event is None:
                self.feedback_log.quarantine_pushes([row], "event_ts outside the accepted window")
            else:
                events.append(event)
                rows.append(row)
        try:
            updated = self.updater.push(events) if events else 0
            pushed = rows
        except STORE_ERRORS as exc:
            self._store_failed(exc)
            return 0
        except Exception as exc:  # a value the store refuses: find whose, push the others
            logger.warning("session push refused (%s): pushing user by user", exc)
            updated, pushed = self._push_each_user(events, rows)
        self.feedback_log.mark_pushed([row["id"] for row in pushed])
        for user in {row["user_id"] for row in pending}:
            self.cache.invalidate(user)
        return updated

    def _push_each_user(self, events: list, rows: list[dict]) -> tuple[int, list[dict]]:
        """Push each user's events alone; a user's refused events are quarantined. Returns
        the users updated and the rows pushed (a store outage stops at the rows so far)."""
        users: dict[str, list[int]] = {}
        for at, row in enumerate(rows):
            users.setdefault(row["user_id"], []).append(at)
        updated, pushed = 0, []
        for positions in users.values():
            mine = [rows[at] for at in positions]
            try:
                updated += self.updater.push([events[at] for at in positions])
                pushed += mine
            except STORE_ERRORS as exc:
                self._store_failed(exc)
                break
            except Exception as exc:
                self.feedback_log.quarantine_pushes(mine, f"the online store refused it: {exc}")
        return updated, pushed

    def _read_products(self, read: Callable[[], int]) -> None:
        """Run a read of product rows (``read`` returns how many); skipped while the store
        is known down, and a failure is logged, not counted against the store: requests
        read what is still stale."""
        if not self.store_breaker.closed:
            return
        started = time.perf_counter()
        try:
            count = read()
        except STORE_ERRORS as exc:
            logger.warning("product rows not refreshed (%s); requests read them", exc)
            return
        if count:
            logger.debug("%d product rows read in %.2fs", count, time.perf_counter() - started)

    def _product_loop(self) -> None:
        """Product rows change when the online store is materialised: each second, read
        again the share of held rows that keeps every row younger than ``item_ttl``, so a
        request finds its candidates' rows held and no second has much more to read than
        another."""
        ttl = self.settings.item_ttl
        if ttl <= 0:  # (nothing is held)
            return
        while not self._stop.wait(1.0):
            loaded = self.follower.current
            features = loaded.state.features if loaded is not None else None
            if features is not None:
                share = math.ceil(len(features.products) / max(ttl / 2, 1.0))
                self._read_products(
                    lambda f=features, n=share: f.refresh_stalest(n, ttl / 2, chunk=PRODUCT_CHUNK)
                )

    def _push_loop(self) -> None:
        while not self._stop.wait(self.settings.push_seconds):
            try:
                self.feedback_log.flush_spool()
                self.push_pending()
            except Exception as exc:
                logger.warning("background feedback work failed: %s", exc)

    # ------------------------------------------------------------------ bookkeeping
    def _served_as(self, request_id: str | None) -> dict[str, str]:
        served = self._recent.get(request_id) if request_id else None
        return {"variant": served[0], "model_version": served[1]} if served else {}

    def _log_error(
        self,
        endpoint: str,
        user_id: str | None,
        state: Prepared,
        variant: str,
        started: float,
        exc: BaseException,
    ) -> None:
        """A failed answer in the served log (endpoint ``<endpoint>:error``), so the canary
        analysis counts each variant's errors beside its answers."""
        response = RecommendResponse(
            items=[],
            model_version=state.version,
            variant=variant,
            request_id=uuid.uuid4().hex,
            fallback=f"{type(exc).__name__}: {exc}"[:500],
        )
        self._log(response, f"{endpoint}:error", user_id, started)

    def _log(self, response: RecommendResponse, endpoint: str, user_id, started: float) -> None:
        latency = (time.perf_counter() - started) * 1000
        with self._recent_lock:
            recent = self._recent
            recent[response.request_id] = (response.variant, response.model_version)
            if len(recent) > RECENT_ANSWERS:
                del recent[next(iter(recent))]
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
        canary = self.canary.current if self.canary is not None else None
        version, tags = self.canary.tags if self.canary is not None else (None, {})
        return {
            "model_version": loaded.version if loaded else None,
            "alias": self.settings.alias,
            "canary_version": canary.version if canary else None,
            "canary_weight": split.weight_of(tags) if canary and version == canary.version else 0.0,
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
        if self.canary is not None:
            self.canary.stop()
        self.feedback_log.close()
        self.cache.close()
