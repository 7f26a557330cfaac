"""HTTP and TCP probes against real servers on 127.0.0.1: 2xx passes, the rest fails, nothing raises."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from meshkit.health import http_probe, tcp_probe
from meshkit.types import HealthCheck, ServiceInstance
from tests.support.servers import free_port, hang, status

HTTP = HealthCheck(kind="http", path="/health", timeout=2.0)


def inst(port: int) -> ServiceInstance:
    return ServiceInstance(f"svc-127.0.0.1-{port}", "svc", "127.0.0.1", port)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def test_200_passes_and_the_check_path_is_requested(upstreams, session) -> None:
    up = await upstreams("a")
    result = await http_probe(session, inst(up.port), HTTP)
    assert result.ok and result.detail == "HTTP 200"
    assert result.duration >= 0
    assert up.paths == ["/health"]


async def test_500_fails(upstreams, session) -> None:
    up = await upstreams("a", status(500))
    result = await http_probe(session, inst(up.port), HTTP)
    assert not result.ok and result.detail == "HTTP 500"


async def test_a_redirect_fails_and_is_never_followed(upstreams, session) -> None:
    target = await upstreams("target")

    async def redirect(request: web.Request) -> web.StreamResponse:
        return web.Response(status=302, headers={"Location": f"http://127.0.0.1:{target.port}/login"})

    up = await upstreams("a", redirect)
    result = await http_probe(session, inst(up.port), HTTP)
    assert not result.ok
    assert "302" in result.detail and "not followed" in result.detail
    assert up.hits == 1
    assert target.hits == 0


async def test_a_hanging_instance_times_out(upstreams, session) -> None:
    up = await upstreams("a", hang())
    result = await http_probe(session, inst(up.port), HealthCheck(timeout=0.2))
    assert not result.ok and "timeout" in result.detail


async def test_a_closed_port_fails_without_raising(session) -> None:
    result = await http_probe(session, inst(free_port()), HTTP)
    assert not result.ok and "connect failed" in result.detail


async def test_accepted_statuses_are_configurable(upstreams, session) -> None:
    up = await upstreams("a", status(204))
    assert (await http_probe(session, inst(up.port), HTTP)).ok
    assert not (await http_probe(session, inst(up.port), HTTP, accept={200})).ok
    maint = await upstreams("b", status(503))
    assert (await http_probe(session, inst(maint.port), HTTP, accept={200, 503})).ok


async def test_tcp_open_port_passes_and_closed_port_fails() -> None:
    accepted = 0

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        opened = await tcp_probe(inst(port), HealthCheck(kind="tcp", timeout=1.0))
        for _ in range(20):  # let the server's accept callback run
            if accepted:
                break
            await asyncio.sleep(0.01)
    finally:
        server.close()
        await server.wait_closed()
    assert opened.ok and accepted == 1
    closed = await tcp_probe(inst(free_port()), HealthCheck(kind="tcp", timeout=1.0))
    assert not closed.ok and closed.detail
