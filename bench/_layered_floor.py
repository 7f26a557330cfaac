"""The least a proxy shaped like the sidecar can spend in Python: a floor for callgrind_sidecar.py.

`_rawproxy.py` is the least any Python proxy spends, but it forwards no header and runs
no coroutine, so it says nothing about a proxy built as the sidecar must be: the request
through a stack of async layers to a transport. This one has that shape and nothing
else: httptools both ways; the caller's fields forwarded, hop-by-hop ones dropped, and
the upstream's forwarded back the same way; a `Request` and a `Response` object; a task
per request; `--layers` async layers that only count and await the next; one future per
exchange on a pooled keep-alive connection. No deadline, retry, breaker, balancer,
discovery, framing or SSRF check, error answer or timeout: each of those only adds to
this. Run by callgrind_sidecar.py: `python bench/_layered_floor.py --port P --upstream
127.0.0.1:U --layers 7`.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from typing import cast

import httptools
import uvloop

from _rawproxy import serve_until_signalled

Fields = list[tuple[bytes, bytes]]
_HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding",
     b"upgrade", b"host", b"content-length"}
)  # fmt: skip


class Request:
    __slots__ = ("body", "context", "fields", "method", "path")

    def __init__(self, method: bytes, path: bytes, fields: Fields, body: bytes) -> None:
        self.method, self.path, self.fields, self.body = method, path, fields, body
        self.context: dict[str, object] = {}


class Response:
    __slots__ = ("body", "fields", "status")

    def __init__(self, status: int, fields: Fields, body: bytes) -> None:
        self.status, self.fields, self.body = status, fields, body


Service = Callable[[Request], Awaitable[Response]]


class Layer:
    """An async layer that does nothing but count: what being one more layer costs."""

    __slots__ = ("calls", "inner")

    def __init__(self, inner: Service) -> None:
        self.inner, self.calls = inner, 0

    async def __call__(self, request: Request) -> Response:
        self.calls += 1
        return await self.inner(request)


class UpstreamConnection(asyncio.Protocol):
    """One pooled keep-alive connection; `send` writes a request, its answer resolves a future."""

    def __init__(self, pool: list[UpstreamConnection]) -> None:
        self.pool = pool
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[Response] | None = None
        self.fields: Fields = []
        self.chunks: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def send(self, data: bytes, waiter: asyncio.Future[Response]) -> None:
        assert self.transport is not None
        self.waiter, self.fields, self.chunks = waiter, [], []
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.fields.append((name, value))

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None:
            waiter.set_result(Response(self.parser.get_status_code(), self.fields, b"".join(self.chunks)))
        self.pool.append(self)


class Transport:
    """Writes the request head from the forwarded fields and awaits the pooled connection's answer."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.pool: list[UpstreamConnection] = []
        self.host_line = f"Host: {host}:{port}\r\n".encode()

    async def __call__(self, request: Request) -> Response:
        lines = [b"%s %s HTTP/1.1\r\n" % (request.method, request.path), self.host_line]
        lines += [name + b": " + value + b"\r\n" for name, value in request.fields]
        lines += [b"Content-Length: %d\r\n\r\n" % len(request.body), request.body]
        loop = asyncio.get_running_loop()
        if self.pool:
            connection = self.pool.pop()
        else:
            _, connection = await loop.create_connection(
                lambda: UpstreamConnection(self.pool), self.host, self.port
            )
        waiter: asyncio.Future[Response] = loop.create_future()
        connection.send(b"".join(lines), waiter)
        return await waiter


class CallerConnection(asyncio.Protocol):
    """One caller's connection: `/<service>/<path>` parsed, sent down the stack, answered."""

    def __init__(self, stack: Service) -> None:
        self.stack = stack
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url, self.fields, self.chunks = b"", cast(Fields, []), cast(list[bytes], [])
        self.tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_begin(self) -> None:
        self.url, self.fields, self.chunks = b"", [], []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() not in _HOP_BY_HOP:
            self.fields.append((name, value))

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        _service, _, path = self.url[1:].partition(b"/")
        request = Request(self.parser.get_method(), b"/" + path, self.fields, b"".join(self.chunks))
        task = asyncio.get_running_loop().create_task(self.answer(request))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def answer(self, request: Request) -> None:
        response = await self.stack(request)
        lines = [b"HTTP/1.1 %d OK\r\n" % response.status]
        lines += [name + b": " + value + b"\r\n" for name, value in response.fields
                  if name.lower() not in _HOP_BY_HOP]  # fmt: skip
        lines += [b"Content-Length: %d\r\n\r\n" % len(response.body), response.body]
        if self.transport is not None:
            self.transport.write(b"".join(lines))


async def serve(port: int, upstream: tuple[str, int], layers: int) -> None:
    stack: Service = Transport(*upstream)
    for _ in range(layers):
        stack = Layer(stack)
    server = await asyncio.get_running_loop().create_server(
        lambda: CallerConnection(stack), "127.0.0.1", port
    )
    await serve_until_signalled(server)


def main() -> None:
    parser = argparse.ArgumentParser(description="layered proxy floor for callgrind_sidecar.py")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="127.0.0.1:PORT")
    parser.add_argument("--layers", type=int, default=7, help="async layers above the transport (default 7)")
    args = parser.parse_args()
    host, _, port = args.upstream.rpartition(":")
    uvloop.run(serve(args.port, (host, int(port)), args.layers))


if __name__ == "__main__":
    main()
