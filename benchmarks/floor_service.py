"""The HTTP floor: BentoML configured as ``bentos/service.py`` (same workers, threads, typed
pydantic request and response), whose /recommend only reads a stored list from Redis.

``http_floor.py`` serves it: whatever latency it shows at a rate is BentoML's and the
machine's, before any work of the platform's own.
"""

import json
import os

import bentoml

from serving.schemas import Item, RecommendRequest, RecommendResponse

KEY = "recsys:floor:list"


@bentoml.service(
    name="recsys-floor",
    workers=int(os.environ.get("RECSYS_SERVE_WORKERS", "2")),
    threads=int(os.environ.get("RECSYS_SERVE_THREADS", "4")),
    traffic={"timeout": 30},
    logging={"access": {"enabled": False}},
)
class FloorService:
    def __init__(self) -> None:
        import redis

        self.redis = redis.Redis(
            host=os.environ.get("RECSYS_REDIS_HOST", "127.0.0.1"),
            port=int(os.environ.get("RECSYS_REDIS_PORT", "6379")),
            db=int(os.environ.get("RECSYS_REDIS_DB", "3")),
        )

    @bentoml.api(route="/recommend", input_spec=RecommendRequest)
    async def recommend(self, **fields) -> RecommendResponse:
        """A stored list of items, as a cached answer is (on the event loop, as ours)."""
        request = RecommendRequest.model_construct(**fields)
        stored = json.loads(self.redis.get(KEY) or b'{"items": []}')
        return RecommendResponse(
            items=[Item(**item) for item in stored["items"][: request.k]],
            model_version="floor",
            variant="production",
            request_id="floor",
            cached=True,
        )
