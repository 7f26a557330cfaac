"""Real aiohttp upstreams on 127.0.0.1 for tests that cross a socket.

`start_upstream(behaviour)` runs an aiohttp app on an ephemeral port; behaviours cover
what instances do in production: answer, fail with 5xx, hang, or reset the connection.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Upstream:
    name: str
    runner: web.AppRunner
    port: int
    host: str = "127.0.0.1"
    hits: int = 0
    paths: list[str] = field(default_factory=list)

    async def stop(self) -> None:
        await self.runner.cleanup()


def ok(body: str = "ok") -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        return web.Response(text=body)

    return handle


def status(code: int) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        return web.Response(status=code, text=f"status {code}")

    return handle


def hang(seconds: float = 3600.0) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(seconds)
        return web.Response(text="late")

    return handle


def reset() -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        transport = request.transport
        if transport is not None:
            sock = transport.get_extra_info("socket")
            if sock is not None:  # SO_LINGER 0: close sends RST
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            transport.close()
        await asyncio.sleep(0.05)
        return web.Response(text="unreachable")

    return handle


async def start_upstream(name: str, handler: Handler | None = None, port: int = 0) -> Upstream:
    """Start an app answering every path with `handler`; it records hits and paths."""
    up: Upstream | None = None
    inner = handler or ok(name)

    async def handle(request: web.Request) -> web.StreamResponse:
        assert up is not None
        up.hits += 1
        up.paths.append(request.path_qs)
        return await inner(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    up = Upstream(name, runner, int(bound))
    return up
