"""Cached recommendation lists: Redis in production, process memory locally.

A user's lists live in one Redis hash, one field per (model version, context bucket, request
parameters), so ``invalidate`` is a single DEL when feedback arrives, and the hash expires as
a whole ``ttl`` seconds after its last write (each entry also carries its own write time, so
an entry older than ``ttl`` is never served). A cache that fails is skipped, not fatal: a
breaker stops asking it for ``retry_seconds`` after an error, so an unreachable Redis costs
one timeout, not one per request.

Writes leave the request path: a worker answers on its event loop, and a write's round trip
held the next request back (0.7 ms of every uncached request on the full shop). A writer
thread sends them in order; until one is sent, the worker reads its own list from memory,
and ``invalidate`` drops the user's unsent lists and waits for a write on the wire, so a list
older than the feedback is never stored after the DEL.
"""

import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict, deque

logger = logging.getLogger(__name__)
PREFIX = "recsys:cache:"
MAX_UNSENT = 10_000  # lists waiting for the writer; beyond, new ones are not kept (a cache)


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
        self._unsent: dict[str, dict[str, dict]] = {}  # user -> key -> stored value
        self._queue: deque[tuple[str, str, float]] = deque()
        self._lock = threading.Lock()  # guards _unsent, _queue and _closed
        self._wake = threading.Condition(self._lock)
        self._sending = threading.Lock()  # held while a write is on the wire
        self._writer: threading.Thread | None = None
        self._closed = False

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
        """The first of ``keys`` held and still fresh (one round trip, none when this
        process's own unsent list answers)."""
        if not self.breaker.closed:
            return None
        with self._lock:
            unsent = dict(self._unsent.get(user_id, {}))
        if keys and keys[0] in unsent and self._fresh(unsent[keys[0]]):
            found: list = [None] * len(keys)
        else:
            try:
                found = self.client.hmget(self.prefix + user_id, list(keys))
            except Exception as exc:
                self._failed("read", exc)
                return None
        for key, raw in zip(keys, found, strict=True):
            value = unsent.get(key)
            if value is None and raw is not None:
                value = json.loads(raw)
            if value is not None and self._fresh(value):
                return value
        return None

    def _fresh(self, value: dict) -> bool:
        return time.time() - value.get("_stored", 0) <= value.get("_ttl", self.ttl)

    def put(self, user_id: str, key: str, value: dict, ttl: float | None = None) -> None:
        """Store ``value`` (sent by the writer thread); ``ttl`` (default: the cache's) only
        ever lengthens the hash's life, so a short-lived entry never expires a precomputed
        one early."""
        if not self.breaker.closed:
            return
        ttl = self.ttl if ttl is None else ttl
        value = value | {"_stored": time.time(), "_ttl": ttl}
        with self._lock:
            if self._closed or len(self._queue) >= MAX_UNSENT:
                return
            self._unsent.setdefault(user_id, {})[key] = value
            self._queue.append((user_id, key, ttl))
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write_loop, name="recsys-cache-writer", daemon=True
                )
                self._writer.start()
            self._wake.notify()

    def _write_loop(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closed:
                    self._wake.wait()
                if not self._queue:
                    return
            with self._sending:
                with self._lock:
                    user_id, key, ttl = self._queue.popleft()
                    value = self._unsent.get(user_id, {}).get(key)
                if value is None:  # invalidated, or sent with an earlier entry of the key
                    continue
                if self.breaker.closed:
                    self._send(user_id, key, value, ttl)
                with self._lock:
                    mine = self._unsent.get(user_id, {})
                    if mine.get(key) is value:
                        del mine[key]
                        if not mine:
                            del self._unsent[user_id]

    def _send(self, user_id: str, key: str, value: dict, ttl: float) -> None:
        name = self.prefix + user_id
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.hset(name, key, json.dumps(value))
            pipe.expire(name, int(ttl) + 1, nx=True)
            pipe.expire(name, int(ttl) + 1, gt=True)
            pipe.execute()
        except Exception as exc:
            self._failed("write", exc)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every list put so far is sent (a batch job before it exits)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._sending, self._lock:
                if not self._queue:
                    return True
            time.sleep(0.001)
        return False

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued (within ``timeout``), then stop the writer."""
        with self._lock:
            self._closed = True
            self._wake.notify()
            writer = self._writer
        if writer is not None:
            writer.join(timeout)

    def invalidate(self, user_id: str) -> bool:
        """False when the entry could not be dropped (the session push that follows the
        outage invalidates again, see ``Engine.push_pending``)."""
        with self._sending:  # (a list computed before the feedback is not stored after it)
            with self._lock:
                self._unsent.pop(user_id, None)
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

    def flush(self, timeout: float = 5.0) -> bool:
        return True

    def close(self, timeout: float = 5.0) -> None:
        return None

    @property
    def healthy(self) -> bool:
        return True
