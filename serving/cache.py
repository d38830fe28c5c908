"""Cached recommendation lists: Redis in production, process memory locally.

A user's lists live in one Redis hash, one field per (model version, context bucket, request
parameters), so ``invalidate`` is a single DEL when feedback arrives, and the hash expires as
a whole ``ttl`` seconds after its last write (each entry also carries its own write time, so
an entry older than ``ttl`` is never served). A cache that fails is skipped, not fatal: a
breaker stops asking it for ``retry_seconds`` after an error, so an unreachable Redis costs
one timeout, not one per request.
"""

import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict

logger = logging.getLogger(__name__)
PREFIX = "recsys:cache:"


def entry_key(model_version: str, bucket: str, params: dict) -> str:
    digest = hashlib.blake2b(
        json.dumps(params, sort_keys=True, default=str).encode(), digest_size=12
    ).hexdigest()
    return f"{model_version}|{bucket}|{digest}"


def precomputed_key(model_version: str) -> str:
    """The field of a user's list computed ahead by ``recsys precompute``: no context, no
    filters, no session; the longest list the job was asked for."""
    return f"{model_version}|precomputed"


def context_bucket(ts: float, device: str | None, country: str | None) -> str:
    """Requests within the same hour, device and country share an answer."""
    return f"{int(ts // 3600)}|{device or '-'}|{country or '-'}"


class Breaker:
    """Open (skip the dependency) for ``retry_seconds`` after a failure."""

    def __init__(self, retry_seconds: float) -> None:
        self.retry_seconds = retry_seconds
        self.open_until = 0.0
        self.last_error = ""

    @property
    def closed(self) -> bool:
        return time.monotonic() >= self.open_until

    def trip(self, exc: BaseException) -> None:
        self.open_until = time.monotonic() + self.retry_seconds
        self.last_error = f"{type(exc).__name__}: {exc}"


class RedisCache:
    def __init__(
        self, client, ttl: float = 300.0, retry_seconds: float = 2.0, prefix: str = PREFIX
    ) -> None:
        self.client, self.ttl, self.prefix = client, ttl, prefix
        self.breaker = Breaker(retry_seconds)

    @classmethod
    def connect(cls, host: str, port: int, db: int = 0, timeout: float = 0.05, **kwargs):
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        client = redis.Redis(
            host=host,
            port=port,
            db=db,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            # no retries: redis-py's default (three, backed off) turns one timeout into seconds
            retry=Retry(NoBackoff(), 0),
            health_check_interval=30,
        )
        return cls(client, **kwargs)

    def get(self, user_id: str, *keys: str) -> dict | None:
        """The first of ``keys`` held and still fresh (one round trip)."""
        if not self.breaker.closed:
            return None
        try:
            found = self.client.hmget(self.prefix + user_id, list(keys))
        except Exception as exc:
            self._failed("read", exc)
            return None
        for raw in found:
            if raw is None:
                continue
            value = json.loads(raw)
            if time.time() - value.get("_stored", 0) <= value.get("_ttl", self.ttl):
                return value
        return None

    def put(self, user_id: str, key: str, value: dict, ttl: float | None = None) -> None:
        """Store ``value``; ``ttl`` (default: the cache's) only ever lengthens the hash's
        life, so a short-lived entry never expires a precomputed one early."""
        if not self.breaker.closed:
            return
        ttl = self.ttl if ttl is None else ttl
        name = self.prefix + user_id
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.hset(name, key, json.dumps(value | {"_stored": time.time(), "_ttl": ttl}))
            pipe.expire(name, int(ttl) + 1, nx=True)
            pipe.expire(name, int(ttl) + 1, gt=True)
            pipe.execute()
        except Exception as exc:
            self._failed("write", exc)

    def invalidate(self, user_id: str) -> bool:
        """False when the entry could not be dropped (the session push that follows the
        outage invalidates again, see ``Engine.push_pending``)."""
        if not self.breaker.closed:
            return False
        try:
            self.client.delete(self.prefix + user_id)
            return True
        except Exception as exc:
            self._failed("invalidate", exc)
            return False

    def _failed(self, what: str, exc: BaseException) -> None:
        if self.breaker.closed:
            logger.warning("cache %s failed (%s); skipping the cache for a while", what, exc)
        self.breaker.trip(exc)

    @property
    def healthy(self) -> bool:
        """Asks Redis (one PING within the timeout) unless it failed moments ago."""
        if not self.breaker.closed:
            return False
        try:
            return bool(self.client.ping())
        except Exception as exc:
            self._failed("ping", exc)
            return False


class MemoryCache:
    """The local profile's cache: per process, bounded, same interface."""

    def __init__(self, ttl: float = 300.0, max_users: int = 100_000) -> None:
        self.ttl, self.max_users = ttl, max_users
        self._data: OrderedDict[str, dict[str, tuple[float, dict, float]]] = OrderedDict()
        self._lock = threading.Lock()
        self.breaker = Breaker(0.0)

    def get(self, user_id: str, *keys: str) -> dict | None:
        with self._lock:
            held = self._data.get(user_id, {})
            found = [held.get(key) for key in keys]
        now = time.monotonic()
        for entry in found:
            if entry is not None and now - entry[0] <= entry[2]:
                return entry[1]
        return None

    def put(self, user_id: str, key: str, value: dict, ttl: float | None = None) -> None:
        ttl = self.ttl if ttl is None else ttl
        with self._lock:
            self._data.setdefault(user_id, {})[key] = (time.monotonic(), value, ttl)
            self._data.move_to_end(user_id)
            while len(self._data) > self.max_users:
                self._data.popitem(last=False)

    def invalidate(self, user_id: str) -> bool:
        with self._lock:
            self._data.pop(user_id, None)
        return True

    @property
    def healthy(self) -> bool:
        return True
