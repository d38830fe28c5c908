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

    def get(self, user_id: str, key: str) -> dict | None:
        if not self.breaker.closed:
            return None
        try:
            raw = self.client.hget(self.prefix + user_id, key)
        except Exception as exc:
            self._failed("read", exc)
            return None
        if raw is None:
            return None
        value = json.loads(raw)
        if time.time() - value.get("_stored", 0) > self.ttl:
            return None
        return value

    def put(self, user_id: str, key: str, value: dict) -> None:
        if not self.breaker.closed:
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.hset(self.prefix + user_id, key, json.dumps(value | {"_stored": time.time()}))
            pipe.expire(self.prefix + user_id, int(self.ttl) + 1)
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
        self._data: OrderedDict[str, dict[str, tuple[float, dict]]] = OrderedDict()
        self._lock = threading.Lock()
        self.breaker = Breaker(0.0)

    def get(self, user_id: str, key: str) -> dict | None:
        with self._lock:
            found = self._data.get(user_id, {}).get(key)
        if found is None or time.monotonic() - found[0] > self.ttl:
            return None
        return found[1]

    def put(self, user_id: str, key: str, value: dict) -> None:
        with self._lock:
            self._data.setdefault(user_id, {})[key] = (time.monotonic(), value)
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
