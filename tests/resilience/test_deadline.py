"""Deadlines: set and bounded by DeadlineLayer, inherited across real hops, garbage ignored."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from meshkit.clock import SYSTEM_CLOCK, FakeClock
from meshkit.errors import DeadlineExceeded, RequestTimeout
from meshkit.resilience.budget import RetryBudget
from meshkit.resilience.deadline import (
    DeadlineLayer,
    DeadlineMiddleware,
    current_deadline,
    deadline_from_headers,
    deadline_middleware,
    deadline_scope,
)
from meshkit.resilience.retry import RetryLayer, RetryPolicy
from meshkit.transport import AiohttpTransport, MockTransport
from meshkit.transport.base import DEADLINE_HEADER
from meshkit.types import Request, Response
from tests.resilience.fakes import FirstAvailable, drive, instances
from tests.support.servers import hang


def ok(request: Request) -> Response:
    return Response(200)


async def forever(request: Request) -> Response:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def test_deadline_is_now_plus_timeout_or_the_default() -> None:
    clock = FakeClock()
    layer = DeadlineLayer(MockTransport(ok), default_timeout=30.0, clock=clock)
    default, own = Request(), Request(timeout=2.5)
    await layer(default)
    await layer(own)
    assert default.deadline == clock.monotonic() + 30.0
    assert own.deadline == clock.monotonic() + 2.5
    unbounded = Request()
    await DeadlineLayer(MockTransport(ok), default_timeout=None, clock=clock)(unbounded)
    assert unbounded.deadline is None


async def test_the_earliest_of_timeout_preset_and_inherited_deadline_wins() -> None:
    clock = FakeClock()
    layer = DeadlineLayer(MockTransport(ok), clock=clock)
    now = clock.monotonic()
    preset = Request(timeout=10.0, deadline=now + 3.0)
    await layer(preset)
    assert preset.deadline == now + 3.0
    with deadline_scope(now + 1.0):
        inherited = Request(timeout=10.0)
        await layer(inherited)
    assert inherited.deadline == now + 1.0
    with deadline_scope(now + 50.0):
        later = Request(timeout=10.0)
        await layer(later)
    assert later.deadline == now + 10.0
    assert current_deadline() is None


async def test_a_passed_inherited_deadline_fails_before_calling() -> None:
    clock = FakeClock()
    transport = MockTransport(ok)
    with deadline_scope(clock.monotonic() - 0.001), pytest.raises(DeadlineExceeded):
        await DeadlineLayer(transport, clock=clock)(Request(service="b"))
    assert transport.requests == []


async def test_fake_clock_bound_cancels_the_call_at_the_deadline() -> None:
    clock = FakeClock()
    layer = DeadlineLayer(MockTransport(forever), clock=clock)
    task = asyncio.ensure_future(layer(Request(timeout=5.0)))
    await clock.run_for(4.9, step=0.1)
    assert not task.done()
    await clock.run_for(0.2, step=0.1)
    with pytest.raises(DeadlineExceeded):
        await task


async def test_bound_covers_retries_and_backoff() -> None:
    clock = FakeClock()
    transport = MockTransport(lambda request: Response(503))
    retry = RetryLayer(
        FirstAvailable(transport),
        policy=RetryPolicy(max_attempts=10, base_delay=1.0),
        budget=RetryBudget(clock=clock),
        clock=clock,
        rng=random.Random(5),
    )
    layer = DeadlineLayer(retry, clock=clock)
    request = Request(timeout=3.0, candidates=instances(1, 2))
    start = clock.monotonic()
    try:
        response = await drive(clock, layer(request))
    except DeadlineExceeded:
        pass
    else:  # a retry whose backoff would pass the deadline was never started
        assert response.status == 503
    assert clock.monotonic() <= start + 3.0 + 0.02
    assert 2 <= len(transport.requests) < 10


async def test_real_clock_hard_bound_on_a_call_that_never_returns() -> None:
    layer = DeadlineLayer(MockTransport(forever), clock=SYSTEM_CLOCK, hard_bound=True)
    with pytest.raises(DeadlineExceeded):
        await layer(Request(timeout=0.05))


async def test_real_clock_default_only_stamps_and_leaves_the_bound_to_the_transport() -> None:
    seen: list[float | None] = []

    def record(request: Request) -> Response:
        seen.append(request.deadline)
        return Response(200)

    before = SYSTEM_CLOCK.monotonic()
    await DeadlineLayer(MockTransport(record), clock=SYSTEM_CLOCK)(Request(timeout=2.0))
    assert seen[0] is not None and before + 2.0 <= seen[0] <= SYSTEM_CLOCK.monotonic() + 2.0


async def test_real_hang_ends_in_deadline_exceeded(upstreams) -> None:
    up = await upstreams("slow", hang())
    transport = AiohttpTransport()
    layer = DeadlineLayer(FirstAvailable(transport), clock=SYSTEM_CLOCK)
    try:
        with pytest.raises(DeadlineExceeded):
            await layer(Request(timeout=0.1, candidates=instances(up.port)))
    finally:
        await transport.aclose()


async def test_an_attempt_timeout_before_the_deadline_stays_request_timeout() -> None:
    def slow(request: Request) -> Response:
        raise RequestTimeout("connect timed out", "x")

    for clock in (SYSTEM_CLOCK, FakeClock()):
        with pytest.raises(RequestTimeout):
            await DeadlineLayer(MockTransport(slow), clock=clock)(Request(timeout=30.0))


@pytest.mark.parametrize("seconds", [0, -1.0, float("nan"), float("inf"), True])
async def test_bad_timeouts_are_value_errors_naming_the_field(seconds: Any) -> None:
    with pytest.raises(ValueError, match=r"^default_timeout: must be"):
        DeadlineLayer(MockTransport(ok), default_timeout=seconds)
    with pytest.raises(ValueError, match=r"^timeout: must be"):
        await DeadlineLayer(MockTransport(ok))(Request(timeout=seconds))


@pytest.mark.parametrize(
    "raw", ["abc", "-5", "nan", "inf", "", "  ", "1e3", "0x10", "1_000", "١٢", ".", "1.2.3", "9" * 20]
)
def test_garbage_headers_are_ignored(raw: str) -> None:
    assert deadline_from_headers({DEADLINE_HEADER: raw}, FakeClock()) is None


def test_header_is_relative_milliseconds() -> None:
    clock = FakeClock(start=100.0)
    assert deadline_from_headers({DEADLINE_HEADER: "1500"}, clock) == pytest.approx(101.5)
    assert deadline_from_headers({DEADLINE_HEADER: "0"}, clock) == pytest.approx(100.0)
    assert deadline_from_headers({DEADLINE_HEADER: " 250.5 "}, clock) == pytest.approx(100.2505)
    assert deadline_from_headers({}, clock) is None


AppHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[AppHandler], Awaitable[int]]]:
    runners: list[web.AppRunner] = []

    async def start(handler: AppHandler) -> int:
        app = web.Application(middlewares=[deadline_middleware])
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        return int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

    yield start
    for runner in runners:
        await runner.cleanup()


async def test_deadline_is_inherited_across_two_real_hops(serve) -> None:
    seen_by_b: list[tuple[str | None, float | None]] = []

    async def service_b(request: web.Request) -> web.StreamResponse:
        left = current_deadline()
        seen_by_b.append(
            (request.headers.get(DEADLINE_HEADER), None if left is None else left - SYSTEM_CLOCK.monotonic())
        )
        return web.Response(text="b")

    b_port = await serve(service_b)
    transport = AiohttpTransport()
    client = DeadlineLayer(FirstAvailable(transport), default_timeout=30.0)  # A's own default is long

    async def service_a(request: web.Request) -> web.StreamResponse:
        left = current_deadline()
        response = await client(Request("GET", "/", service="b", candidates=instances(b_port)))
        remaining_ms = "none" if left is None else str(int((left - SYSTEM_CLOCK.monotonic()) * 1000))
        return web.Response(text=f"{response.text()} {remaining_ms}")

    a_port = await serve(service_a)
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{a_port}/", headers={DEADLINE_HEADER: "5000"}) as resp:
                inherited = await resp.text()
            async with session.get(f"http://127.0.0.1:{a_port}/", headers={DEADLINE_HEADER: "soon"}) as resp:
                garbage = await resp.text()
    finally:
        await transport.aclose()
    body, a_left = inherited.split()
    assert body == "b" and 0 < int(a_left) <= 5000
    (header_1, left_1), (header_2, left_2) = seen_by_b
    assert header_1 is not None and 0 < int(header_1) <= 5000  # B got less than A's caller gave A
    assert left_1 is not None and 0 < left_1 <= 5.0
    assert garbage == "b none"  # the bad header was ignored: A used its own 30 s default
    assert header_2 is not None and 5000 < int(header_2) <= 30000
    assert left_2 is not None and 5.0 < left_2 <= 30.0


async def test_asgi_middleware_sets_the_deadline_for_the_app() -> None:
    clock = FakeClock(start=50.0)
    seen: list[float | None] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(current_deadline())

    middleware = DeadlineMiddleware(app, clock=clock)
    header = DEADLINE_HEADER.lower().encode()
    for headers in ([(header, b"2000")], [(header, b"\xff garbage")], [], [(b"other", b"1")]):
        await middleware({"type": "http", "headers": headers}, None, None)
    await middleware({"type": "lifespan"}, None, None)
    assert seen == [52.0, None, None, None, None]
    assert current_deadline() is None
