"""Request bodies the API does not take are refused before BentoML reads them.

Every route of the service takes JSON. BentoML's own reader answered a multipart body without
a boundary with a 500 (found by schemathesis on every POST route); a declared Content-Type
other than JSON is now a 415 naming the header, in the shape of the service's 400s.
"""

import json
import logging

logger = logging.getLogger(__name__)
JSON = "application/json"


class JsonBodiesOnly:
    """ASGI middleware: a POST whose declared Content-Type is not JSON is a 415."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope.get("method") == "POST":
            declared = declared_type(scope.get("headers") or [])
            if declared is not None and declared != JSON:
                await _refuse(send, declared)
                return
        await self.app(scope, receive, send)


def declared_type(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The media type of the Content-Type header, without parameters; None when absent."""
    for name, value in headers:
        if name.lower() == b"content-type":
            return value.decode("latin-1").split(";", 1)[0].strip().lower()
    return None


async def _refuse(send, declared: str) -> None:
    detail = {
        "loc": ["header", "content-type"],
        "msg": f"{declared[:100]!r} is not accepted: send {JSON}",
        "type": "unsupported_media_type",
    }
    body = json.dumps({"detail": [detail]}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 415,
            "headers": [
                (b"content-type", JSON.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
