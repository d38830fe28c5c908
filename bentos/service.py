"""The BentoML recommendation service (PLATFORM.md section 4).

One class, the engine built once per worker in ``__init__``; each endpoint validates its body
against the contract's pydantic model (unknown or malformed fields are a 400 naming them),
runs the request path in ``serving.engine`` and records Prometheus metrics. ``/healthz``,
``/readyz`` (a model version loaded) and ``/metrics`` are BentoML's, wired to the engine.
"""

import logging
import os
import time

import bentoml
from pydantic import Field

from serving.request_guard import RequestGuard
from serving.schemas import (
    MAX_EVENTS,
    FeedbackEvent,
    RecommendRequest,
    RecommendResponse,
    SimilarRequest,
    Strict,
)

logger = logging.getLogger(__name__)


class FeedbackRequest(Strict):
    events: list[FeedbackEvent] = Field(..., min_length=1, max_length=MAX_EVENTS)


class FeedbackResponse(Strict):
    accepted: int
    sessions_updated: int


class Status(Strict):
    model_version: str | None
    alias: str
    canary_version: str | None = None
    canary_weight: float = 0.0
    online_store: bool
    cache: bool
    last_error: str


def _metrics():
    """Created in the worker (not at import); BentoML's /metrics exports prometheus_client's
    registry (multi-process: every worker's values)."""
    from prometheus_client import Counter, Histogram

    return {
        "latency": Histogram(
            name="recsys_request_seconds",
            documentation="request latency by endpoint and outcome",
            labelnames=["endpoint", "outcome"],
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5),
        ),
        "requests": Counter(
            name="recsys_requests",
            documentation="answered requests by endpoint, variant, model version and path",
            labelnames=["endpoint", "variant", "model_version", "path"],
        ),
        "fallbacks": Counter(
            name="recsys_fallbacks",
            documentation="answers from a degraded path",
            labelnames=["endpoint"],
        ),
        "feedback": Counter(
            name="recsys_feedback_events",
            documentation="feedback events accepted",
            labelnames=["event_type"],
        ),
        # the alert rules' error rate: requests that failed with a server error (5xx), not
        # the rejected ones (4xx, counted by recsys_request_seconds{outcome="rejected"})
        "errors": Counter(
            name="recsys_errors",
            documentation="requests that failed with a server error, by endpoint",
            labelnames=["endpoint"],
        ),
        "cache": Counter(
            name="recsys_cache_lookups",
            documentation="answers from the cache (hit) or computed (miss), for a hit rate",
            labelnames=["endpoint", "result"],
        ),
    }


def access_log() -> bool:
    """Whether BentoML logs each request (``RECSYS_SERVE_ACCESS_LOG``, on unless ``0``,
    ``false``, ``no`` or ``off``): the line is formatted and written on the worker's CPU for
    every request, and Prometheus' metrics already count the requests and their latency."""
    value = os.environ.get("RECSYS_SERVE_ACCESS_LOG", "1").strip().lower()
    return value not in ("0", "false", "no", "off")


@bentoml.service(
    name="recsys",
    workers=int(os.environ.get("RECSYS_SERVE_WORKERS", "1")),
    threads=int(os.environ.get("RECSYS_SERVE_THREADS", "4")),
    traffic={"timeout": 30},
    logging={"access": {"enabled": access_log()}},
)
class RecsysService:
    def __init__(self) -> None:
        import sys

        from recsys.workspace import Workspace
        from serving import client_errors
        from serving.engine import Engine
        from serving.settings import load_settings

        client_errors.install()
        settings = load_settings()
        # a request waits for Python's lock at each network call; while a new model version
        # loads in the background, the default 5 ms hand-over makes every wait that long
        sys.setswitchinterval(settings.switch_interval)
        self.engine = Engine(Workspace.from_env(), settings)
        self.metrics = _metrics()

    def __is_ready__(self) -> bool:
        return self.engine.ready

    def _answer(self, endpoint: str, call, *args):
        from serving.schemas import RequestError

        started = time.perf_counter()
        try:
            response = call(*args)
        except RequestError as exc:
            self.metrics["latency"].labels(endpoint, "rejected").observe(
                time.perf_counter() - started
            )
            raise exc.as_validation_error(endpoint) from None
        except Exception:
            self.metrics["latency"].labels(endpoint, "error").observe(time.perf_counter() - started)
            self.metrics["errors"].labels(endpoint).inc()
            raise
        self.metrics["latency"].labels(endpoint, "ok").observe(time.perf_counter() - started)
        if isinstance(response, RecommendResponse):
            path = "fallback" if response.fallback else "cached" if response.cached else "computed"
            self.metrics["requests"].labels(
                endpoint, response.variant, response.model_version, path
            ).inc()
            if response.fallback:
                self.metrics["fallbacks"].labels(endpoint).inc()
            self.metrics["cache"].labels(endpoint, "hit" if response.cached else "miss").inc()
        return response

    @bentoml.api(route="/recommend", input_spec=RecommendRequest)
    async def recommend(self, **fields) -> RecommendResponse:
        """Top-k products for a user (known, new or anonymous), with a reason for each.

        Answered on the event loop itself: a request is some 10 ms of CPU that Python's lock
        lets one thread run at a time anyway, and handing it to a request thread made each
        wait for the lock against the loop and the other requests' threads (p99 at 100
        requests/s on 2 workers: 44.7 ms on 2 threads, 28.4 ms on 1, 23-27 ms inline;
        ``benchmarks/serve_load.py``). Its only waits are Redis reads bounded by
        ``store_timeout``. With fault injection on (tests and demonstrations), a canary's
        injected delay must not hold the loop, so requests go to threads."""
        request = RecommendRequest.model_construct(**fields)
        if self.engine.settings.fault_injection:
            from anyio import to_thread

            return await to_thread.run_sync(
                self._answer, "recommend", self.engine.recommend, request
            )
        return self._answer("recommend", self.engine.recommend, request)

    @bentoml.api(route="/similar_items", input_spec=SimilarRequest)
    def similar_items(self, **fields) -> RecommendResponse:
        """Products like a given one (also a product newer than the model)."""
        return self._answer(
            "similar_items", self.engine.similar, SimilarRequest.model_construct(**fields)
        )

    @bentoml.api(route="/feedback", input_spec=FeedbackRequest)
    def feedback(self, events: list[FeedbackEvent]) -> FeedbackResponse:
        """Impressions, clicks, carts and purchases: logged durably, folded into the session."""
        result = self._answer("feedback", self.engine.feedback, events)
        for event in events:
            self.metrics["feedback"].labels(event.event_type).inc()
        return FeedbackResponse(**result)

    @bentoml.api(route="/status")
    def status(self) -> Status:
        """Which version answers and which dependencies are up (for operators)."""
        return Status(**self.engine.health())

    @bentoml.on_shutdown
    def close(self) -> None:
        self.engine.close()


# (a declared Content-Type other than JSON is a 415, a body over max_body_bytes a 413, both
# before BentoML reads the body)
RecsysService.add_asgi_middleware(RequestGuard)
