"""Requests the API does not take are refused before BentoML reads them.

Every route of the service takes a JSON body of modest size. BentoML's own reader answered a
multipart body without a boundary with a 500 (found by schemathesis on every POST route), and
one 18 MB body held a worker for about a second. A declared Content-Type other than JSON is a
415 naming the header; a body over ``max_body_bytes`` (service settings) is a 413, read no
further: by its Content-Length, or counted as it arrives when it has none.
"""

import json
import logging

logger = logging.getLogger(__name__)
JSON = "application/json"


class RequestGuard:
    """ASGI middleware in front of the service: media type and body size of each POST."""

    def __init__(self, app, max_body_bytes: int | None = None) -> None:
        self.app = app
        self._limit = max_body_bytes

    @property
    def limit(self) -> int:
        if self._limit is None:  # (read once, in the worker: no work at import)
            from serving.settings import load_settings

            self._limit = load_settings().max_body_bytes
        return self._limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        headers = dict_of(scope.get("headers") or [])
        declared = media_type(headers.get(b"content-type"))
        if declared is not None and declared != JSON:
            await _refuse(
                send,
                415,
                ["header", "content-type"],
                f"{declared[:100]!r} is not accepted: send {JSON}",
            )
            return
        length = headers.get(b"content-length")
        if length is not None:
            if length.isdigit() and int(length) > self.limit:
                await _refuse(send, 413, ["header", "content-length"], self._too_large())
                return
            await self.app(scope, receive, send)
            return
        # no length given (a chunked body): read it here, up to the limit, then hand it on
        messages, size = [], 0
        while True:
            message = await receive()
            messages.append(message)
            size += len(message.get("body", b""))
            if size > self.limit:
                await _refuse(send, 413, ["body"], self._too_large())
                return
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        replay = iter(messages)

        async def replayed():
            return next(replay, None) or await receive()

        await self.app(scope, replayed, send)

    def _too_large(self) -> str:
        return f"the body is over {self.limit:,} bytes (max_body_bytes)"


def dict_of(headers: list[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    return {name.lower(): value for name, value in headers}


def media_type(value: bytes | None) -> str | None:
    """The media type of a Content-Type value, without parameters; None when absent."""
    if value is None:
        return None
    return value.decode("latin-1").split(";", 1)[0].strip().lower()


async def _refuse(send, status: int, loc: list[str], message: str) -> None:
    """A 4xx in the shape of the service's 400s: ``detail`` naming what was wrong."""
    kind = "unsupported_media_type" if status == 415 else "too_large"
    body = json.dumps({"detail": [{"loc": loc, "msg": message, "type": kind}]}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", JSON.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
