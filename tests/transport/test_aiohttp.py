"""The aiohttp transport against real servers on 127.0.0.1: answers, 5xx, hangs, resets, refusals."""

from __future__ import annotations

import pytest

from meshkit import AiohttpTransport, ConnectError, ConnectionReset, Request, RequestTimeout, ServiceInstance
from meshkit.clock import SYSTEM_CLOCK
from meshkit.transport.base import DEADLINE_HEADER
from tests.support.servers import free_port, hang, reset, status


def inst(port: int) -> ServiceInstance:
    return ServiceInstance(f"svc-127.0.0.1-{port}", "svc", "127.0.0.1", port)


async def test_round_trip_keeps_status_headers_and_body(upstreams) -> None:
    up = await upstreams("a")
    transport = AiohttpTransport()
    try:
        req = Request("POST", "/x?y=1", {"X-A": "1"}, b"hello", instance=inst(up.port))
        resp = await transport(req)
    finally:
        await transport.aclose()
    assert resp.status == 200
    assert resp.body == b"a"
    assert resp.instance is not None and resp.instance.port == up.port
    assert up.paths == ["/x?y=1"]


async def test_5xx_is_a_response_not_an_error(upstreams) -> None:
    up = await upstreams("a", status(503))
    transport = AiohttpTransport()
    try:
        resp = await transport(Request(instance=inst(up.port)))
    finally:
        await transport.aclose()
    assert resp.status == 503


async def test_refused_connection_is_connect_error() -> None:
    transport = AiohttpTransport()
    try:
        with pytest.raises(ConnectError) as info:
            await transport(Request(instance=inst(free_port())))
    finally:
        await transport.aclose()
    assert info.value.instance_id is not None


async def test_hang_times_out_at_the_deadline(upstreams) -> None:
    up = await upstreams("a", hang())
    transport = AiohttpTransport()
    try:
        req = Request(instance=inst(up.port), deadline=SYSTEM_CLOCK.monotonic() + 0.2)
        with pytest.raises(RequestTimeout):
            await transport(req)
    finally:
        await transport.aclose()


async def test_reset_is_connection_reset(upstreams) -> None:
    up = await upstreams("a", reset())
    transport = AiohttpTransport()
    try:
        with pytest.raises(ConnectionReset):
            await transport(Request(instance=inst(up.port)))
    finally:
        await transport.aclose()


async def test_deadline_travels_in_a_header(upstreams) -> None:
    seen: dict[str, str] = {}

    async def echo(request):  # type: ignore[no-untyped-def]
        from aiohttp import web

        seen.update(request.headers)
        return web.Response(text="ok")

    up = await upstreams("a", echo)
    transport = AiohttpTransport()
    try:
        await transport(Request(instance=inst(up.port), deadline=SYSTEM_CLOCK.monotonic() + 5))
    finally:
        await transport.aclose()
    assert 4000 < int(seen[DEADLINE_HEADER]) <= 5000


async def test_redirects_are_not_followed(upstreams) -> None:
    async def redirect(request):  # type: ignore[no-untyped-def]
        from aiohttp import web

        return web.Response(status=302, headers={"Location": "http://169.254.169.254/"})

    up = await upstreams("a", redirect)
    transport = AiohttpTransport()
    try:
        resp = await transport(Request(instance=inst(up.port)))
    finally:
        await transport.aclose()
    assert resp.status == 302
    assert up.hits == 1


async def test_response_body_cap(upstreams) -> None:
    up = await upstreams("a", lambda r: _big())
    transport = AiohttpTransport(max_response_bytes=1000)
    try:
        with pytest.raises(ConnectionReset, match="over 1000 bytes"):
            await transport(Request(instance=inst(up.port)))
    finally:
        await transport.aclose()


async def _big():  # type: ignore[no-untyped-def]
    from aiohttp import web

    return web.Response(body=b"x" * 5000)
