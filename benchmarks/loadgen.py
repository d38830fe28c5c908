"""Open-loop HTTP load generator for the recommendation service (loopback only, bounded).

    python benchmarks/loadgen.py --url http://127.0.0.1:3000 --rate 100 --duration 30 \\
        [--max-requests N] [--users FILE] [--mode uncached|cached|both] [--k 10] [--warmup 5] \\
        [--json OUT] [--timeout 2.0] [--endpoint /recommend]

Requests are sent at a constant arrival rate: request i is scheduled at start + i/rate and its
latency is measured from that scheduled instant, so a slow answer cannot delay the next send
and hide its own cost (coordinated omission). The generator reports its own send rate and lag
(scheduled to actual send), so a reader can tell whether the client or the service was the
bottleneck. Uncached mode never repeats a cache key; cached mode primes a small hot set once and
then replays exactly those bodies. Latency percentiles are over 2xx answers; errors are counted
apart (non-2xx by status, timeouts, connection errors, 2xx bodies that break the contract).
``run_load`` and ``make_bodies`` are importable, e.g. by a benchmark orchestrator that moves a
registry alias mid-run and reads ``versions.timeline``.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import ipaddress
import json
import math
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import numpy as np

MAX_K = 200  # serving.schemas.MAX_K; a larger k would be a 400, not a cache miss
MAX_RATE = 5_000.0
MAX_DURATION = 3_600.0
MAX_WARMUP = 600.0
MAX_TIMEOUT = 60.0
HOT_SET = 50
CONNECTIONS = 64
HOURS_PER_CYCLE = 3  # each reuse of a user moves the context this many hours back
START_LEAD = 0.05  # seconds between setting the schedule and its first send
CANCEL_GRACE = 0.5  # seconds past the request timeout before in-flight requests are cancelled
DEADLINE_SLACK = 0.5  # seconds past the schedule's end that a late send is still made
PRIME_CONCURRENCY = 8
PRIME_ATTEMPTS = 3  # an error is not cached, so a failed priming request is retried
MIN_RESLEEP = 0.001  # seconds; see _sleep_until
SEND_RATE_TOLERANCE = 0.02  # beyond this the client, not the service, may be the bottleneck
LAG_P99_LIMIT_MS = 10.0
DEVICES = ("mobile", "desktop")
JSON_HEADERS = {"Content-Type": "application/json", "User-Agent": "recsys-loadgen"}
MODES = ("uncached", "cached")

# Not loop.time(): under uvloop that is libuv's millisecond time, cached once per loop iteration,
# which would quantise every latency to whole milliseconds.
clock = time.perf_counter


class TargetUnavailable(RuntimeError):
    """The service did not answer GET /readyz with 200, so a load run would only measure errors."""


# --------------------------------------------------------------------------- target checks


def check_loopback(url: str) -> None:
    """Refuse anything but loopback, so a typo cannot turn a benchmark into load on a real host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{url!r}: expected an http:// or https:// URL")
    host = parts.hostname
    if not host:
        raise ValueError(f"{url!r}: no host in the URL")
    if host == "localhost":
        addresses = {info[4][0] for info in socket.getaddrinfo(host, parts.port or 80)}
        bad = sorted(a for a in addresses if not _is_loopback_ip(a))
        if bad:
            raise ValueError(f"'localhost' resolves to non-loopback {', '.join(bad)}; refusing")
        return
    if not _is_loopback_ip(host):
        raise ValueError(
            f"refusing non-loopback host {host!r}: the load generator only targets "
            "127.0.0.0/8, ::1 or localhost"
        )


def _is_loopback_ip(text: str) -> bool:
    """True for 127.0.0.0/8 and ::1 (also IPv4-mapped); False for names and other addresses."""
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or bool(mapped and mapped.is_loopback)


def split_target(url: str, endpoint: str = "/recommend") -> tuple[str, str]:
    """(base URL, endpoint URL): a URL that already has a path is taken as the endpoint itself.

    This lets an importer pass either ``http://127.0.0.1:3000`` or the full endpoint URL; the
    readiness probe always goes to the base.
    """
    parts = urlsplit(url)
    base = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
    if parts.path not in ("", "/"):
        return base, urlunsplit((parts.scheme, parts.netloc, parts.path, parts.query, ""))
    return base, base + "/" + endpoint.lstrip("/")


# --------------------------------------------------------------------------- users and bodies


def load_users(path: str | Path) -> list[str]:
    """User ids from CSV/Parquet (``user_id`` column) or text (one per line), deduplicated.

    Duplicates are dropped in order because uncached mode promises each user at most once per
    cycle; a repeated id in the file would otherwise be a cache hit.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq  # lazy: only Parquet users pay the import

        ids = [str(v) for v in pq.read_table(path, columns=["user_id"]).column(0).to_pylist()]
    elif suffix in (".csv", ".tsv"):
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle, delimiter="\t" if suffix == ".tsv" else ",")
            if "user_id" not in (reader.fieldnames or []):
                raise ValueError(f"{path}: no 'user_id' column (columns: {reader.fieldnames})")
            ids = [row["user_id"] for row in reader]
    else:
        ids = path.read_text().splitlines()
    users = list(dict.fromkeys(s.strip() for s in ids if s and s.strip()))
    if not users:
        raise ValueError(f"{path}: no user ids")
    return users


def synthetic_users(n: int) -> list[str]:
    """``u000001`` ...: unknown to the service, which PLATFORM.md allows (cold-start path)."""
    return [f"u{i:06d}" for i in range(1, n + 1)]


def make_bodies(
    users: Sequence[str] | None,
    mode: str,
    k: int,
    n: int,
    *,
    now: float | None = None,
    hot_set: int = HOT_SET,
) -> list[dict[str, Any]]:
    """Request bodies for ``mode``; ``n`` is the number of requests the run will send.

    uncached: ``n`` bodies whose (user, context, k) never repeat. Users are used in order; when
    they run out the next cycle changes ``k`` and moves the timestamp ``HOURS_PER_CYCLE`` hours
    back, so a cache keyed by (user, context bucket, k, filters) still misses.
    cached: the first ``min(n, hot_set, len(users))`` users, one body each at a fixed timestamp;
    the run replays exactly these bodies (see ``run_load(prime=True)``).
    ``users=None`` means synthetic ids. Keys are unique within a run only: a second uncached run
    with the same users in the same hour can hit the first run's entries, which the report's
    ``cached_share`` (and a printed warning) makes visible.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    if not 1 <= k <= MAX_K:
        raise ValueError(f"k must be in 1..{MAX_K}")
    base = int(time.time() if now is None else now)
    if mode == "cached":
        size = min(n, hot_set) if users is None else min(n, hot_set, len(users))
        pool = synthetic_users(size) if users is None else list(users[:size])
        return [_body(user, k, base, i) for i, user in enumerate(pool)]
    pool = synthetic_users(n) if users is None else list(users)
    if not pool:
        raise ValueError("no users")
    bodies = []
    for j in range(n):
        cycle, slot = divmod(j, len(pool))
        cycle_k = (k - 1 + cycle) % MAX_K + 1
        stamp = base - cycle * HOURS_PER_CYCLE * 3600
        bodies.append(_body(pool[slot], cycle_k, stamp, slot))
    return bodies


def _body(user: str, k: int, timestamp: int, slot: int) -> dict[str, Any]:
    """One /recommend body; the device alternates so both context values are exercised."""
    device = DEVICES[slot % len(DEVICES)]
    return {"user_id": user, "k": k, "context": {"timestamp": timestamp, "device": device}}


def requests_for(rate: float, seconds: float) -> int:
    """Requests scheduled at i/rate strictly inside ``seconds`` (tolerant of float noise)."""
    return max(0, math.ceil(rate * seconds - 1e-9))


# --------------------------------------------------------------------------- sending


@dataclass(slots=True)
class Result:
    """One request's fate; times are ``clock()`` seconds, ``status`` 0 when none arrived."""

    index: int
    due: float
    sent: float
    done: float
    outcome: str  # ok | http | timeout | connection | bad_response
    status: int = 0
    version: str | None = None
    variant: str | None = None
    fallback: str | None = None
    cached: bool = False


class ConnectionRing:
    """``size`` persistent connections, each request on the one idle longest.

    One pooled client reuses the connection freed last: under a light load almost every
    request then travels on one or two connections, so on whichever of the service's workers
    accepted them, while the other worker idles. A shop's traffic comes from many clients
    (browsers, front-end servers, a load balancer's upstream connections) and reaches every
    worker; taking the connections in turn reproduces that."""

    def __init__(self, size: int, timeout: aiohttp.ClientTimeout) -> None:
        self.sessions = [
            aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=1, keepalive_timeout=60),
                timeout=timeout,
                cookie_jar=aiohttp.DummyCookieJar(),
            )  # no cookie jar: a cookie set by one answer must not make later requests differ
            for _ in range(size)
        ]
        self.idle: asyncio.Queue[aiohttp.ClientSession] = asyncio.Queue()
        for session in self.sessions:
            self.idle.put_nowait(session)

    async def post(self, target: str, payload: bytes) -> tuple[int, bytes]:
        session = await self.idle.get()
        try:
            async with session.post(target, data=payload, headers=JSON_HEADERS) as response:
                return response.status, await response.read()
        finally:
            self.idle.put_nowait(session)

    async def close(self) -> None:
        await asyncio.gather(*(session.close() for session in self.sessions))


async def _send_one(
    ring: ConnectionRing,
    target: str,
    payload: bytes,
    index: int,
    due: float,
    sink: list[Result],
) -> None:
    """POST one body and record it; the result is recorded even when cancelled at shutdown."""
    sent = clock()
    result = Result(index, due, sent, sent, "ok")
    try:
        result.status, raw = await ring.post(target, payload)
        result.done = clock()
        if 200 <= result.status < 300:
            _read_answer(raw, result)
        else:
            result.outcome = "http"
    except TimeoutError:
        result.done, result.outcome = clock(), "timeout"
    except asyncio.CancelledError:  # still in flight when the drain time ran out
        result.done, result.outcome = clock(), "timeout"
        sink.append(result)
        raise
    except (aiohttp.ClientConnectionError, OSError):
        result.done, result.outcome = clock(), "connection"
    except aiohttp.ClientError:
        result.done, result.outcome = clock(), "bad_response"
    sink.append(result)


def _read_answer(raw: bytes, result: Result) -> None:
    """Keep only the fields the report needs; a 2xx that is not the contract is an error."""
    try:
        answer = json.loads(raw)
        result.version = str(answer["model_version"])
        result.variant = answer.get("variant")
        result.fallback = answer.get("fallback") or None
        result.cached = answer.get("cached") is True
    except (ValueError, KeyError, TypeError):
        result.outcome = "bad_response"


async def _open_loop(
    ring: ConnectionRing,
    target: str,
    payloads: Sequence[bytes],
    rate: float,
    total: int,
    deadline: float,
    timeout: float,
) -> tuple[float, list[Result]]:
    """Send ``total`` requests at start + i/rate, stop at ``deadline`` s, drain in-flight.

    Returns the schedule's start (``clock()``) and every started request's result. A request
    the client could not start within ``DEADLINE_SLACK`` of the deadline is not sent (reported
    as unsent): the slack keeps a few milliseconds of lag on the last requests from dropping them.
    """
    loop = asyncio.get_running_loop()
    sink: list[Result] = []
    tasks: set[asyncio.Task[None]] = set()
    start = clock() + START_LEAD
    stop = start + deadline + DEADLINE_SLACK
    for i in range(total):
        due = start + i / rate
        await _sleep_until(due)
        if clock() >= stop:
            break
        task = loop.create_task(_send_one(ring, target, payloads[i % len(payloads)], i, due, sink))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        _, pending = await asyncio.wait(set(tasks), timeout=timeout + CANCEL_GRACE)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    return start, sink


async def _sleep_until(due: float) -> None:
    """Sleep to ``due``; when woken early, sleep at least a millisecond more.

    asyncio never wakes early, but a loop with millisecond timers (uvloop, if a caller awaits
    ``run_load_async`` under it) rounds short delays to zero and would spin here.
    """
    delay = due - clock()
    while delay > 0:
        await asyncio.sleep(delay)
        delay = due - clock()
        if delay > 0:
            delay = max(delay, MIN_RESLEEP)


async def _prime(ring: ConnectionRing, target: str, payloads: Sequence[bytes]) -> dict[str, Any]:
    """Request each hot body once (unmeasured) so the measured cached run can hit the cache.

    A body whose answer failed is retried (``PRIME_ATTEMPTS`` in all): an error is not cached,
    so without the retry that key's first measured request would be a miss.
    """
    gate = asyncio.Semaphore(PRIME_CONCURRENCY)
    sink: list[Result] = []

    async def one(i: int) -> None:
        async with gate:
            await _send_one(ring, target, payloads[i], i, clock(), sink)

    started = clock()
    todo = list(range(len(payloads)))
    for _ in range(PRIME_ATTEMPTS):
        sink.clear()
        await asyncio.gather(*(one(i) for i in todo))
        todo = sorted(r.index for r in sink if r.outcome != "ok")
        if not todo:
            break
    return {
        "bodies": len(payloads),
        "ok": len(payloads) - len(todo),
        "errors": dict(Counter(r.outcome for r in sink if r.outcome != "ok")),
        "seconds": round(clock() - started, 3),
    }


async def check_ready(session: aiohttp.ClientSession, base: str, timeout: float) -> None:
    """GET /readyz once; raise ``TargetUnavailable`` with a message a person can act on."""
    url = base + "/readyz"
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            text = (await response.text())[:300]
            if response.status != 200:
                raise TargetUnavailable(
                    f"{url} answered {response.status}, the service is not ready: {text!r}"
                )
    except TimeoutError:
        raise TargetUnavailable(f"{url} did not answer within {timeout} s") from None
    except aiohttp.ClientError as error:
        raise TargetUnavailable(
            f"cannot reach {url} ({error.__class__.__name__}: {error}); is the service running?"
        ) from None


# --------------------------------------------------------------------------- the run


async def run_load_async(
    url: str,
    rate: float,
    duration: float,
    bodies: Sequence[dict[str, Any]],
    timeout: float = 2.0,
    warmup: float = 0.0,
    *,
    max_requests: int | None = None,
    endpoint: str = "/recommend",
    prime: bool = False,
    connections: int = CONNECTIONS,
) -> dict[str, Any]:
    """The coroutine behind ``run_load``, for callers that already run an event loop."""
    _validate(url, rate, duration, bodies, timeout, warmup, max_requests, connections)
    base, target = split_target(url, endpoint)
    payloads = [json.dumps(b, separators=(",", ":")).encode() for b in bodies]
    n_warm = requests_for(rate, warmup)
    n_measured = requests_for(rate, duration)
    if max_requests is not None:
        n_measured = min(n_measured, max_requests)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(timeout=client_timeout) as probe:
        await check_ready(probe, base, timeout)
    ring = ConnectionRing(connections, client_timeout)
    try:
        primed = await _prime(ring, target, payloads) if prime else None
        start, results = await _open_loop(
            ring, target, payloads, rate, n_warm + n_measured, warmup + duration, timeout
        )
        epoch_start = time.time() - (clock() - start)
    finally:
        await ring.close()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    report = summarise(results, start + n_warm / rate, n_warm, n_measured, rate)
    report["started_at"] = round(epoch_start + n_warm / rate, 3)
    report["settings"] = {
        "url": target,
        "rate": rate,
        "duration": duration,
        "warmup": warmup,
        "timeout": timeout,
        "max_requests": max_requests,
        "connections": connections,
        "distinct_bodies": len(payloads),
        "bodies_reused": n_warm + n_measured > len(payloads),
    }
    report["client"]["cpu_seconds"] = round(cpu, 3)
    report["client"]["cpu_share"] = round(cpu / wall, 4) if wall else None
    report["warmup"] = _phase_counts([r for r in results if r.index < n_warm], n_warm)
    if primed is not None:
        report["prime"] = primed
    return report


def run_load(
    url: str,
    rate: float,
    duration: float,
    bodies: Sequence[dict[str, Any]],
    timeout: float = 2.0,
    warmup: float = 0.0,
    *,
    max_requests: int | None = None,
    endpoint: str = "/recommend",
    prime: bool = False,
    connections: int = CONNECTIONS,
) -> dict[str, Any]:
    """Run one open-loop load phase against a loopback ``url`` and return its report (a dict).

    ``bodies`` are sent in order (cycled if fewer than the requests: fine for cached mode, and
    flagged as ``settings.bodies_reused`` because it breaks uncached mode); warm-up requests use
    the first bodies. ``prime=True`` first sends each body once, unmeasured (cached mode).
    Raises ``ValueError`` for a non-loopback URL or bad settings and ``TargetUnavailable`` when
    GET /readyz fails.

    The report: ``sent``/``unsent``/``completed``/``ok``, ``throughput_rps``, ``errors`` (by
    kind), ``error_rate``, ``latency_ms`` (from the scheduled send; p50/p95/p99/max/mean),
    ``fallback_share``, ``cached_share``, ``versions`` (``counts``, ``variants``,
    ``first_seen_s``/``last_seen_s`` and a per-second ``timeline`` counted from ``started_at``,
    the measured start in epoch seconds) and ``client`` (achieved ``send_rate``, ``lag_ms`` behind
    the schedule, ``client_limited``, and the whole process's CPU during the call).

    Blocking: it runs its own asyncio event loop, so call it from a thread of its own when
    something else must happen during the run (e.g. moving an alias), or await
    ``run_load_async`` from inside a running loop.
    """
    coroutine = run_load_async(
        url,
        rate,
        duration,
        bodies,
        timeout,
        warmup,
        max_requests=max_requests,
        endpoint=endpoint,
        prime=prime,
        connections=connections,
    )
    return asyncio.run(coroutine)


def _validate(
    url: str,
    rate: float,
    duration: float,
    bodies: Sequence[dict[str, Any]],
    timeout: float,
    warmup: float,
    max_requests: int | None,
    connections: int,
) -> None:
    """Bound every dimension of the run: loopback only, finite rate, time and request count."""
    check_loopback(url)
    if not 0 < rate <= MAX_RATE:
        raise ValueError(f"rate must be in (0, {MAX_RATE:g}] requests/s")
    if not 0 < duration <= MAX_DURATION:
        raise ValueError(f"duration must be in (0, {MAX_DURATION:g}] s")
    if not 0 <= warmup <= MAX_WARMUP:
        raise ValueError(f"warmup must be in [0, {MAX_WARMUP:g}] s")
    if not 0 < timeout <= MAX_TIMEOUT:
        raise ValueError(f"timeout must be in (0, {MAX_TIMEOUT:g}] s")
    if max_requests is not None and max_requests < 1:
        raise ValueError("max_requests must be at least 1")
    if connections < 1:
        raise ValueError("connections must be at least 1")
    if not bodies:
        raise ValueError("no request bodies")


# --------------------------------------------------------------------------- the report


def summarise(
    results: Sequence[Result], start: float, n_warm: int, planned: int, rate: float
) -> dict[str, Any]:
    """Figures for the measured requests (index >= n_warm); ``start`` is the measured start."""
    measured = [r for r in results if r.index >= n_warm]
    measured.sort(key=lambda r: r.index)
    ok = [r for r in measured if r.outcome == "ok"]
    responded = [r for r in measured if r.status]
    sent = len(measured)
    end = max([start + planned / rate, *(r.done for r in measured)])
    window = end - start
    http = Counter(str(r.status) for r in measured if r.outcome == "http")
    outcomes = Counter(r.outcome for r in measured)
    return {
        "sent": sent,
        "unsent": planned - sent,
        "completed": len(responded),
        "ok": len(ok),
        "window_s": round(window, 3),
        "throughput_rps": round(len(responded) / window, 2) if window > 0 else 0.0,
        "ok_rps": round(len(ok) / window, 2) if window > 0 else 0.0,
        "errors": {
            "http": dict(sorted(http.items())),
            "http_total": sum(http.values()),
            "timeout": outcomes.get("timeout", 0),
            "connection": outcomes.get("connection", 0),
            "bad_response": outcomes.get("bad_response", 0),
        },
        "error_rate": round((sent - len(ok)) / sent, 5) if sent else None,
        "latency_ms": _percentiles([r.done - r.due for r in ok], (50, 95, 99)),
        "latency_from_send_ms": _percentiles([r.done - r.sent for r in ok], (50, 99)),
        "fallback_share": _share(ok, lambda r: r.fallback is not None),
        "fallback_reasons": dict(Counter(r.fallback for r in ok if r.fallback)),
        "cached_share": _share(ok, lambda r: r.cached),
        "versions": _versions(ok, measured, start),
        "client": _client(measured, rate),
    }


def _percentiles(seconds: Sequence[float], points: Sequence[int]) -> dict[str, float | None]:
    """Milliseconds at the given percentiles plus max and mean (None when nothing answered)."""
    if not seconds:
        return {**{f"p{p}": None for p in points}, "max": None, "mean": None}
    ms = np.asarray(seconds) * 1000.0
    values = np.percentile(ms, points)
    out = {f"p{p}": round(float(v), 2) for p, v in zip(points, values, strict=True)}
    return {**out, "max": round(float(ms.max()), 2), "mean": round(float(ms.mean()), 2)}


def _share(results: Sequence[Result], test: Callable[[Result], bool]) -> float | None:
    """Fraction of successful answers for which ``test`` holds."""
    return round(sum(map(test, results)) / len(results), 5) if results else None


def _versions(ok: Sequence[Result], measured: Sequence[Result], start: float) -> dict[str, Any]:
    """Counts per model_version and a per-second timeline, to see an alias move take effect.

    Seconds are counted from the measured start by when the answer arrived; errors are in the
    timeline too because a version switch that drops requests should be visible as such.
    """
    seconds: dict[int, dict[str, Any]] = {}
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    for r in measured:
        offset = max(0.0, r.done - start)
        slot = seconds.setdefault(int(offset), {"ok": 0, "errors": 0, "versions": Counter()})
        if r.outcome != "ok":
            slot["errors"] += 1
            continue
        slot["ok"] += 1
        version = r.version or "?"
        slot["versions"][version] += 1
        first[version] = min(first.get(version, offset), offset)
        last[version] = max(last.get(version, offset), offset)
    timeline = [
        {"t": t, "ok": s["ok"], "errors": s["errors"], "versions": dict(s["versions"])}
        for t, s in sorted(seconds.items())
    ]
    return {
        "counts": dict(Counter(r.version or "?" for r in ok)),
        "variants": dict(Counter(r.variant or "?" for r in ok)),
        "first_seen_s": {v: round(t, 3) for v, t in first.items()},
        "last_seen_s": {v: round(t, 3) for v, t in last.items()},
        "timeline": timeline,
    }


def _client(measured: Sequence[Result], rate: float) -> dict[str, Any]:
    """Did the client keep its schedule? Achieved send rate and lag behind the schedule."""
    if len(measured) < 2:
        return {"target_rate": rate, "send_rate": None, "lag_ms": _percentiles([], (50, 99))}
    sent = np.fromiter((r.sent for r in measured), float)
    span = float(sent.max() - sent.min())
    send_rate = (len(measured) - 1) / span if span > 0 else float("inf")
    lag = _percentiles([r.sent - r.due for r in measured], (50, 99))
    off = abs(send_rate - rate) / rate
    limited = off > SEND_RATE_TOLERANCE or (lag["p99"] or 0.0) > LAG_P99_LIMIT_MS
    return {
        "target_rate": rate,
        "send_rate": round(send_rate, 2),
        "send_rate_error_pct": round(100.0 * (send_rate - rate) / rate, 3),
        "lag_ms": lag,
        "client_limited": limited,
    }


def _phase_counts(results: Sequence[Result], planned: int) -> dict[str, int]:
    """Just enough about the warm-up to notice it failing; its latencies are not reported."""
    outcomes = Counter(r.outcome for r in results)
    return {"planned": planned, "sent": len(results), "ok": outcomes.get("ok", 0)}


def _send_rate(r: dict[str, Any]) -> str:
    return f"{r['client']['send_rate']} (target {r['client']['target_rate']:g})"


def _lag(r: dict[str, Any]) -> str:
    return f"{r['client']['lag_ms']['p99']} / {r['client']['lag_ms']['max']}"


ROWS: tuple[tuple[str, Callable[[dict[str, Any]], Any]], ...] = (
    ("sent / planned", lambda r: f"{r['sent']} / {r['sent'] + r['unsent']}"),
    ("completed (any HTTP answer)", lambda r: r["completed"]),
    ("ok (2xx)", lambda r: r["ok"]),
    ("throughput completed/s", lambda r: r["throughput_rps"]),
    ("error rate", lambda r: _pct(r["error_rate"])),
    ("  non-2xx", lambda r: _http_errors(r["errors"])),
    ("  timeouts", lambda r: r["errors"]["timeout"]),
    ("  connection errors", lambda r: r["errors"]["connection"]),
    ("  bad responses", lambda r: r["errors"]["bad_response"]),
    ("latency p50 ms", lambda r: r["latency_ms"]["p50"]),
    ("latency p95 ms", lambda r: r["latency_ms"]["p95"]),
    ("latency p99 ms", lambda r: r["latency_ms"]["p99"]),
    ("latency max ms", lambda r: r["latency_ms"]["max"]),
    ("fallback share", lambda r: _pct(r["fallback_share"])),
    ("cached share", lambda r: _pct(r["cached_share"])),
    ("model versions", lambda r: _counts(r["versions"]["counts"])),
    ("client send rate /s", _send_rate),
    ("client lag p99 / max ms", _lag),
    ("client CPU (share of a core)", lambda r: _pct(r["client"].get("cpu_share"))),
)


def format_report(reports: dict[str, dict[str, Any]]) -> str:
    """A plain table, one column per mode, then warnings a reader should not miss."""
    header = ["", *reports]
    rows = [header] + [[label, *(str(get(r)) for r in reports.values())] for label, get in ROWS]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.extend(_warnings(reports))
    return "\n".join(lines)


def _warnings(reports: dict[str, dict[str, Any]]) -> list[str]:
    """Conditions that make the figures misleading, spelled out."""
    notes = []
    for mode, r in reports.items():  # (any mode but cached means every request a new key)
        if r["client"].get("client_limited"):
            notes.append(f"WARNING {mode}: the client fell behind its schedule; {_why_late(r)}")
        if r["unsent"]:
            notes.append(f"WARNING {mode}: {r['unsent']} request(s) not sent by the deadline")
        if mode != "cached" and r["cached_share"]:
            notes.append(f"WARNING {mode}: some answers were cached (an earlier run's keys?)")
        if mode != "cached" and r["settings"]["bodies_reused"]:
            notes.append(f"WARNING {mode}: bodies were reused, so requests could hit a cache")
        if mode == "cached" and r.get("prime", {}).get("errors"):
            notes.append(f"WARNING {mode}: priming had errors {r['prime']['errors']}")
        if len(r["versions"]["counts"]) > 1:
            first = sorted(r["versions"]["first_seen_s"].items(), key=lambda item: item[1])
            seen = ", ".join(f"{version} from {t:.1f}s" for version, t in first)
            notes.append(f"note {mode}: several model versions answered ({seen})")
    return notes


def _why_late(report: dict[str, Any]) -> str:
    """Lag with little client CPU means the machine was oversubscribed, not the generator slow."""
    share = report["client"].get("cpu_share") or 0.0
    if share < 0.5:
        return f"it used only {_pct(share)} of a core, so the machine was short of CPU"
    return f"it used {_pct(share)} of a core, so the generator itself may be the limit"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100.0 * value:.2f}%"


def _http_errors(errors: dict[str, Any]) -> str:
    return str(errors["http_total"]) + (f" {_counts(errors['http'])}" if errors["http"] else "")


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in counts.items()) or "-"


# --------------------------------------------------------------------------- command line


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keep the module docstring's layout and show defaults, except the meaningless None."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The CLI; every limit is checked here so a bad run fails before it sends anything."""
    parser = argparse.ArgumentParser(
        prog="loadgen.py",
        description=__doc__,
        epilog=(
            "Exit status: 0 after a run (errors are in the report), 2 for bad arguments or a "
            "non-loopback URL, 3 when GET /readyz fails. Latency is measured from each request's "
            "scheduled send time; the report's client rows show whether the generator kept up."
        ),
        formatter_class=_HelpFormatter,
    )
    add = parser.add_argument
    add(
        "--url", required=True, help="service base URL; loopback only (127.0.0.0/8, ::1, localhost)"
    )
    add("--rate", type=float, required=True, help=f"requests/s, open loop (max {MAX_RATE:g})")
    add("--duration", type=float, required=True, help="measured seconds per mode")
    add("--max-requests", type=int, metavar="N", help="stop a mode after N measured requests")
    add(
        "--users",
        metavar="FILE",
        help="CSV/Parquet with a user_id column, or text with one id a line "
        "(without it: synthetic ids u000001, u000002, ...)",
    )
    add(
        "--mode",
        choices=("uncached", "cached", "both"),
        default="uncached",
        help="uncached: each request a fresh (user, context, k), users used once then cycled with "
        "another k and a timestamp hours earlier; cached: request a hot set of users once "
        "(unmeasured), then replay exactly those bodies; both: uncached, then cached",
    )
    add("--k", type=int, default=10, help=f"items per request (1..{MAX_K})")
    add("--warmup", type=float, default=5.0, help="unmeasured seconds at the same rate first")
    add("--json", metavar="OUT", help="also write the full report (timeline included) as JSON")
    add("--timeout", type=float, default=2.0, help="per-request timeout and drain time, seconds")
    add("--endpoint", default="/recommend", help="path that receives the POSTs")
    add("--hot-users", type=int, default=HOT_SET, help="size of the cached mode's hot set")
    add("--connections", type=int, default=CONNECTIONS, help="keep-alive connection pool size")
    args = parser.parse_args(argv)
    problems = _arg_problems(args)
    if problems:
        parser.error("; ".join(problems))
    return args


def _arg_problems(args: argparse.Namespace) -> list[str]:
    """Range checks argparse cannot express; the loopback rule is the important one."""
    problems = []
    try:
        check_loopback(args.url)
    except (ValueError, OSError) as error:
        problems.append(str(error))
    checks = (
        (0 < args.rate <= MAX_RATE, f"--rate must be in (0, {MAX_RATE:g}]"),
        (0 < args.duration <= MAX_DURATION, f"--duration must be in (0, {MAX_DURATION:g}]"),
        (0 <= args.warmup <= MAX_WARMUP, f"--warmup must be in [0, {MAX_WARMUP:g}]"),
        (0 < args.timeout <= MAX_TIMEOUT, f"--timeout must be in (0, {MAX_TIMEOUT:g}]"),
        (args.max_requests is None or args.max_requests >= 1, "--max-requests must be >= 1"),
        (1 <= args.k <= MAX_K, f"--k must be in 1..{MAX_K}"),
        (args.hot_users >= 1, "--hot-users must be >= 1"),
        (1 <= args.connections <= 1024, "--connections must be in 1..1024"),
        (args.endpoint.startswith("/"), "--endpoint must start with /"),
    )
    problems.extend(message for ok, message in checks if not ok)
    return problems


def run_mode(args: argparse.Namespace, mode: str, users: list[str] | None) -> dict[str, Any]:
    """One mode of the CLI: build its bodies, then hand them to ``run_load``."""
    measured = requests_for(args.rate, args.duration)
    if args.max_requests is not None:
        measured = min(measured, args.max_requests)
    needed = requests_for(args.rate, args.warmup) + measured
    bodies = make_bodies(users, mode, args.k, needed, hot_set=args.hot_users)
    report = run_load(
        args.url,
        args.rate,
        args.duration,
        bodies,
        args.timeout,
        args.warmup,
        max_requests=args.max_requests,
        endpoint=args.endpoint,
        prime=mode == "cached",
        connections=args.connections,
    )
    report["mode"] = mode
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Run the requested modes (uncached first, so its keys are not warmed by the cached run)."""
    args = parse_args(argv)
    try:
        users = load_users(args.users) if args.users else None
    except (OSError, ValueError) as error:
        print(f"loadgen: cannot read users: {error}", file=sys.stderr)
        return 2
    modes = MODES if args.mode == "both" else (args.mode,)
    reports: dict[str, dict[str, Any]] = {}
    for mode in modes:
        print(f"loadgen: {mode}: {args.rate:g}/s for {args.duration:g}s", file=sys.stderr)
        try:
            reports[mode] = run_mode(args, mode, users)
        except TargetUnavailable as error:
            print(f"loadgen: target not available: {error}", file=sys.stderr)
            return 3
    print(format_report(reports))
    if args.json:
        _write_json(args.json, {"args": vars(args), "modes": reports})
    return 0


def _write_json(path: str, data: dict[str, Any]) -> None:
    """Write atomically enough for a caller that polls for the file."""
    target = Path(path)
    partial = target.with_name(target.name + ".partial")
    partial.write_text(json.dumps(data, indent=2) + "\n")
    partial.replace(target)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
