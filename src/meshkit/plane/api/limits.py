"""A cap on request bodies: anything larger is refused with a JSON 413 before the app reads it.

Pure ASGI middleware (Starlette's pattern). The body is read up to the cap and buffered,
then replayed to the app, so a chunked upload that passes the cap mid-stream is refused
just like one whose Content-Length says so up front; the app never sees a partial body.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

import orjson

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DEFAULT_MAX_BODY_BYTES = 1 << 20


async def _reply(send: Send, status: int, detail: str) -> None:
    body = orjson.dumps({"detail": detail})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def read_body(scope: Scope, receive: Receive, send: Send, limit: int) -> bytes | None:
    """The whole request body, at most `limit` bytes; None once a 400/413 is sent or the client left."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            if not value.isdigit():
                await _reply(send, 400, "Content-Length: must be a non-negative integer")
                return None
            if int(value) > limit:
                await _reply(send, 413, f"body: must be at most {limit} bytes, got {int(value)}")
                return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None  # the client went away
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            await _reply(send, 413, f"body: must be at most {limit} bytes, got more")
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def replaying(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands out `body` as one message, then defers to the real one."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class BodyLimit:
    def __init__(
        self, app: ASGIApp, *, max_bytes: int = DEFAULT_MAX_BODY_BYTES, per_path: Mapping[str, int] = {}
    ) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
            raise ValueError(f"max_bytes: must be an integer >= 1, got {max_bytes!r}")
        self.app = app
        self.max_bytes = max_bytes
        self.per_path = dict(per_path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.per_path.get(scope.get("path", ""), self.max_bytes)
        body = await read_body(scope, receive, send, limit)
        if body is not None:
            await self.app(scope, replaying(body, receive), send)
