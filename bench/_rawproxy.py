"""A protocol-level Python pass-through: what an asyncio proxy costs without aiohttp, as a floor.

asyncio `Protocol`s on uvloop with httptools' C parsers (the ones uvicorn uses), both
ways: each client request is parsed, written to a pooled keep-alive upstream connection,
the upstream's answer is parsed and written back with its status, content type and
body, all in callbacks (no task, no stream object, no header multidict per request).
It is not a product: no timeouts, no pipelining, bodies buffered, 502 when the upstream
connection drops. It shows how close a Python proxy can get to nginx on one core, so
the distance from the aiohttp pass-through to it is what the HTTP stack costs. Run by
bench_proxy.py: `python bench/_rawproxy.py --port P --upstream 127.0.0.1:U`.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Callable
from typing import cast

import httptools

Reply = Callable[[int, bytes, bytes], None]
CONNECTING: set[asyncio.Future[None]] = set()  # new upstream connections being opened


class UpstreamConnection(asyncio.Protocol):
    """One keep-alive connection to the upstream, carrying one request at a time."""

    def __init__(self, pool: list[UpstreamConnection]) -> None:
        self.pool = pool
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.reply: Reply | None = None
        self.content_type = b""
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass of it

    def send(self, request: bytes, reply: Reply) -> None:
        assert self.transport is not None
        self.reply, self.content_type, self.body = reply, b"", []
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"content-type":
            self.content_type = value

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        reply, self.reply = self.reply, None
        if reply is not None:
            reply(self.parser.get_status_code(), self.content_type, b"".join(self.body))
        if self.parser.should_keep_alive():
            self.pool.append(self)
        elif self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self in self.pool:
            self.pool.remove(self)
        reply, self.reply = self.reply, None
        if reply is not None:
            reply(502, b"text/plain", b"upstream connection lost")


class ClientConnection(asyncio.Protocol):
    """One caller's connection: parse a request, forward it, write the answer back."""

    def __init__(self, upstream: tuple[str, int], pool: list[UpstreamConnection]) -> None:
        self.upstream = upstream
        self.host = f"{upstream[0]}:{upstream[1]}".encode()
        self.pool = pool
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass of it

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()

    def on_message_begin(self) -> None:
        self.url, self.body = b"", []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        method = self.parser.get_method()
        body = b"".join(self.body)
        head = b"%s %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n" % (
            method,
            self.url,
            self.host,
            len(body),
        )
        keep_alive = self.parser.should_keep_alive()
        reply = self._replier(keep_alive)
        if self.pool:
            self.pool.pop().send(head + body, reply)
        else:
            task = asyncio.ensure_future(self._connect_and_send(head + body, reply))
            CONNECTING.add(task)
            task.add_done_callback(CONNECTING.discard)

    async def _connect_and_send(self, request: bytes, reply: Reply) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(lambda: UpstreamConnection(self.pool), *self.upstream)
        except OSError:
            reply(502, b"text/plain", b"upstream connect failed")
            return
        conn.send(request, reply)

    def _replier(self, keep_alive: bool) -> Reply:
        def reply(status: int, content_type: bytes, body: bytes) -> None:
            transport = self.transport
            if transport is None or transport.is_closing():
                return
            head = b"HTTP/1.1 %d %s\r\nContent-Length: %d\r\n" % (
                status,
                b"OK" if status == 200 else b"-",
                len(body),
            )
            if content_type:
                head += b"Content-Type: " + content_type + b"\r\n"
            transport.write(head + b"\r\n" + body)
            if not keep_alive:
                transport.close()

        return reply

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve(port: int, upstream: tuple[str, int]) -> None:
    loop = asyncio.get_running_loop()
    pool: list[UpstreamConnection] = []
    server = await loop.create_server(
        lambda: ClientConnection(upstream, pool), "127.0.0.1", port, backlog=1024
    )
    await serve_until_signalled(server)


async def serve_until_signalled(server: asyncio.AbstractServer) -> None:
    """Serve until SIGINT or SIGTERM (how bench_proxy.py and callgrind_sidecar.py stop a proxy)."""
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="protocol-level pass-through for bench_proxy.py")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="127.0.0.1:PORT")
    args = parser.parse_args()
    host, _, port = args.upstream.rpartition(":")
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.port, (host, int(port))))
    else:
        uvloop.run(serve(args.port, (host, int(port))))


if __name__ == "__main__":
    main()
