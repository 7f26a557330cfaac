"""Refusing request framing the control plane cannot trust (HTTP request smuggling, RFC 9112 6.1-6.3).

`/call` makes the plane a forwarding proxy, so it must agree with every hop about where a
request ends (PortSwigger's "HTTP Desync Attacks", 2019). httptools (llhttp) already refuses
Content-Length with Transfer-Encoding, duplicate or malformed Content-Length, unknown codings
and CR, LF or NUL in headers; two readings it lets through are refused here, with the rules
of the sidecar's `meshkit.proxy.framing`: a coding list such as `gzip, chunked` (the plane
decodes no coding but chunked, RFC 9112 6.1 lets a server refuse it) and Transfer-Encoding in
an HTTP/1.0 request, which "MUST be treated as faulty framing" (RFC 9112 6.1). The refusal is
a JSON 400 that closes the connection, so no leftover bytes are read as a next request. Pure
ASGI middleware; an ordinary request costs one pass over its header list.
"""

from __future__ import annotations

import orjson

from meshkit.plane.api.limits import ASGIApp, Receive, Scope, Send


async def _refuse(send: Send, detail: str) -> None:
    body = orjson.dumps({"detail": detail})
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 400, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def framing_problem(scope: Scope) -> str | None:
    """Why the request's body length has more than one reading, or None when it has one."""
    codings = [value for name, value in scope.get("headers", ()) if name == b"transfer-encoding"]
    if not codings:
        return None
    if scope.get("http_version") == "1.0":
        return "headers: Transfer-Encoding is not allowed in an HTTP/1.0 request"
    if len(codings) != 1 or codings[0].strip().lower() != b"chunked":
        shown = [c.decode("latin-1")[:40] for c in codings]
        return f"headers: Transfer-Encoding must be exactly 'chunked', got {shown!r}"
    return None


class FramingCheck:
    """Answer 400 (and close) to a request whose framing a proxy could read two ways."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            problem = framing_problem(scope)
            if problem is not None:
                return await _refuse(send, problem)
        return await self.app(scope, receive, send)
