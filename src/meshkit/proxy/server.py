"""The sidecar proxy: `http://127.0.0.1:PORT/<service>/<path>` through the full meshkit client stack.

A service in any language gets discovery, balancing, breakers, retries, deadlines and
tracing by calling its local sidecar instead of the instance (the Linkerd and Envoy
sidecar model, here without iptables: the caller addresses the sidecar explicitly). The
handler is the hot path: it splits the target once, drops hop-by-hop headers both ways
(RFC 9110 7.6.1) and the caller's `X-Meshkit-*` headers (the mesh's own: the caller's
deadline is read from them first, then the transport stamps the next hop's), reads a
capped body, calls the `MeshClient` and copies the answer back.
Mesh decisions become JSON errors: 503 when no instance could serve the call (none
registered, breakers open, retry budget spent, every attempt failed), 504 when the
deadline passed. Framing the proxy cannot trust is refused with 400 before anything is
forwarded (see `meshkit.proxy.framing`).
"""

from __future__ import annotations

from aiohttp import web

from meshkit.client import MeshClient
from meshkit.plane.ssrf import UnsafePath
from meshkit.proxy.forward import forward, outgoing_headers
from meshkit.proxy.framing import UnsafeFraming, check_framing
from meshkit.proxy.routing import BadRoute, split_target

DEFAULT_MAX_BODY = 10 * 1024 * 1024


def error_response(status: int, error: str, detail: str) -> web.Response:
    body = web.json_response({"detail": detail, "error": error}, status=status)
    body.headers["X-Meshkit-Error"] = error
    return body


class ProxyHandler:
    """An aiohttp handler forwarding each request through `client` to the service it names."""

    __slots__ = ("client", "max_body")

    def __init__(self, client: MeshClient, *, max_body: int = DEFAULT_MAX_BODY) -> None:
        if isinstance(max_body, bool) or not isinstance(max_body, int) or max_body < 0:
            raise ValueError(f"max_body: must be an integer number of bytes >= 0, got {max_body!r}")
        self.client = client
        self.max_body = max_body

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        try:
            check_framing(request)
            service, path = split_target(request.raw_path)
        except (BadRoute, UnsafePath, UnsafeFraming) as exc:
            return error_response(400, type(exc).__name__, str(exc))
        body = await self._read_body(request)
        if isinstance(body, web.Response):
            return body
        # the mapping to and from the mesh is shared with the h1 engine (meshkit.proxy.forward)
        answer = await forward(
            self.client, request.method, service, path, request.headers, body, request.remote
        )
        return web.Response(status=answer.status, headers=answer.headers, body=answer.body)

    async def _read_body(self, request: web.Request) -> bytes | web.Response | None:
        if not request.body_exists:
            return None
        length = request.content_length
        if length is not None and length > self.max_body:
            return self._too_large()
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._too_large()
        except ConnectionError:  # the caller left mid-body: nothing to forward, no one to answer
            return error_response(400, "IncompleteBody", "body: the connection closed before the body ended")
        return body or None

    def _too_large(self) -> web.Response:
        return error_response(413, "BodyTooLarge", f"body: must be at most {self.max_body} bytes")


def proxy_app(client: MeshClient, *, max_body: int = DEFAULT_MAX_BODY) -> web.Application:
    """An aiohttp app that routes every method and path through a `ProxyHandler`."""
    app = web.Application(client_max_size=max_body, handler_args={"max_field_size": 16384})
    handler = ProxyHandler(client, max_body=max_body)
    app.router.add_route("*", "/{tail:.*}", handler.__call__)  # a coroutine function, as aiohttp wants
    return app


__all__ = ["DEFAULT_MAX_BODY", "ProxyHandler", "error_response", "outgoing_headers", "proxy_app"]
