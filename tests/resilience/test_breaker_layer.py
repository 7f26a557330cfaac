"""BreakerSet and BreakerLayer: with a MockTransport on a FakeClock, and against real upstreams."""

from __future__ import annotations

import asyncio

import pytest

from meshkit.clock import SYSTEM_CLOCK, FakeClock
from meshkit.errors import CircuitOpen, ConnectError, ConnectionReset, RequestTimeout
from meshkit.events import BreakerTransition, EventBus, EventRecorder
from meshkit.resilience.breaker import BreakerLayer, BreakerPolicy, BreakerSet, BreakerState
from meshkit.transport import AiohttpTransport, MockTransport
from meshkit.types import Request, Response, ServiceInstance
from tests.support.servers import hang, reset, status


def inst(port: int = 8000, host: str = "127.0.0.1") -> ServiceInstance:
    return ServiceInstance(f"svc-{host}-{port}", "svc", host, port)


def fixed(code: int) -> MockTransport:
    return MockTransport(lambda request: Response(code))


async def call(layer: BreakerLayer, instance: ServiceInstance, deadline: float | None = None) -> Response:
    return await layer(Request(instance=instance, deadline=deadline))


async def test_layer_opens_after_threshold_and_then_fails_fast_without_sending() -> None:
    clock = FakeClock()
    transport = fixed(503)
    layer = BreakerLayer(transport, breakers=BreakerSet(BreakerPolicy(failure_threshold=5), clock=clock))
    a = inst()
    for _ in range(5):
        assert (await call(layer, a)).status == 503
    with pytest.raises(CircuitOpen) as info:
        await call(layer, a)
    assert info.value.instance_id == a.id
    assert info.value.retry_after == pytest.approx(60.0)
    assert len(transport.requests) == 5


async def test_4xx_never_trips() -> None:
    breakers = BreakerSet(BreakerPolicy(failure_threshold=2), clock=FakeClock())
    layer = BreakerLayer(fixed(404), breakers=breakers)
    for _ in range(10):
        assert (await call(layer, inst())).status == 404
    assert breakers.states() == {inst().id: "closed"}


async def test_transport_errors_count_and_are_re_raised() -> None:
    def refuse(request: Request) -> Response:
        raise ConnectError("refused", request.instance.id if request.instance else None)

    breakers = BreakerSet(BreakerPolicy(failure_threshold=2), clock=FakeClock())
    layer = BreakerLayer(MockTransport(refuse), breakers=breakers)
    for _ in range(2):
        with pytest.raises(ConnectError):
            await call(layer, inst())
    with pytest.raises(CircuitOpen):
        await call(layer, inst())


async def test_half_open_admits_one_probe_concurrently_and_its_success_closes() -> None:
    clock = FakeClock()
    gate = asyncio.Event()
    healthy = False

    async def handler(request: Request) -> Response:
        if not healthy:
            return Response(503)
        await gate.wait()
        return Response(200)

    transport = MockTransport(handler)
    breakers = BreakerSet(BreakerPolicy(failure_threshold=1, recovery_timeout=10.0), clock=clock)
    layer = BreakerLayer(transport, breakers=breakers)
    a = inst()
    await call(layer, a)
    assert breakers.states() == {a.id: "open"}
    clock.advance(10.0)
    healthy = True
    probe = asyncio.create_task(call(layer, a))
    await asyncio.sleep(0)
    assert not breakers.allows(a)
    for _ in range(3):  # while the probe is out, everyone else fails fast
        with pytest.raises(CircuitOpen):
            await call(layer, a)
    gate.set()
    assert (await probe).status == 200
    assert breakers.states() == {a.id: "closed"}
    assert len(transport.requests) == 2


async def test_cancelled_probe_gives_its_slot_back() -> None:
    clock = FakeClock()
    calls = 0

    async def handler(request: Request) -> Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            return Response(503)
        await asyncio.Event().wait()  # the probe hangs forever
        raise AssertionError("unreachable")

    breakers = BreakerSet(BreakerPolicy(failure_threshold=1, recovery_timeout=1.0), clock=clock)
    layer = BreakerLayer(MockTransport(handler), breakers=breakers)
    a = inst()
    await call(layer, a)
    clock.advance(1.0)
    probe = asyncio.create_task(call(layer, a))
    await asyncio.sleep(0)
    assert not breakers.allows(a)
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    assert breakers.allows(a)
    assert breakers.get(a.id).state is BreakerState.HALF_OPEN


async def test_breaker_set_gate_states_configure_and_forget() -> None:
    bus = EventBus()
    recorder = EventRecorder(bus)
    clock = FakeClock()
    breakers = BreakerSet(BreakerPolicy(failure_threshold=5), clock=clock, bus=bus)
    layer = BreakerLayer(fixed(503), breakers=breakers)
    a, b = inst(1), inst(2)
    assert breakers.allows(a) and len(breakers) == 0  # never seen: closed, nothing created
    await call(layer, a)
    await call(layer, a)
    await call(layer, b)
    breakers.configure(BreakerPolicy(failure_threshold=3, recovery_timeout=7.0))  # existing breakers too
    await call(layer, a)
    assert breakers.states() == {a.id: "open", b.id: "closed"}
    assert not breakers.allows(a) and breakers.allows(b)
    assert breakers.get(a.id).retry_after() == pytest.approx(7.0)
    events = recorder.of(BreakerTransition)
    assert [(e.instance_id, e.new) for e in events] == [(a.id, "open")]  # type: ignore[attr-defined]
    clock.advance(7.0)
    assert breakers.states()[a.id] == "half-open"
    breakers.forget(a.id)
    assert a.id not in breakers and breakers.allows(a)


async def test_request_without_instance_passes_through() -> None:
    breakers = BreakerSet(clock=FakeClock())
    layer = BreakerLayer(fixed(200), breakers=breakers)
    assert (await layer(Request())).status == 200
    assert len(breakers) == 0


async def test_trips_on_a_real_upstream_returning_503(upstreams) -> None:
    up = await upstreams("a", status(503))
    transport = AiohttpTransport()
    breakers = BreakerSet(BreakerPolicy(failure_threshold=5), clock=SYSTEM_CLOCK)
    layer = BreakerLayer(transport, breakers=breakers)
    a = inst(up.port)
    try:
        for _ in range(5):
            assert (await call(layer, a)).status == 503
        with pytest.raises(CircuitOpen):
            await call(layer, a)
    finally:
        await transport.aclose()
    assert up.hits == 5
    assert breakers.states() == {a.id: "open"}


async def test_trips_on_real_resets_and_hangs(upstreams) -> None:
    resetting = await upstreams("r", reset())
    hanging = await upstreams("h", hang())
    transport = AiohttpTransport()
    breakers = BreakerSet(BreakerPolicy(failure_threshold=2), clock=SYSTEM_CLOCK)
    layer = BreakerLayer(transport, breakers=breakers)
    r, h = inst(resetting.port), inst(hanging.port)
    try:
        for _ in range(2):
            with pytest.raises(ConnectionReset):
                await call(layer, r)
            with pytest.raises(RequestTimeout):
                await call(layer, h, deadline=SYSTEM_CLOCK.monotonic() + 0.1)
        with pytest.raises(CircuitOpen):
            await call(layer, r)
        with pytest.raises(CircuitOpen):
            await call(layer, h)
    finally:
        await transport.aclose()
    assert breakers.states() == {r.id: "open", h.id: "open"}


async def test_breaker_set_counts_breakers_that_are_not_closed() -> None:
    clock = FakeClock()
    bus = EventBus()
    recorder = EventRecorder(bus)
    breakers = BreakerSet(BreakerPolicy(failure_threshold=1, recovery_timeout=1.0), clock=clock, bus=bus)
    ok, failing = BreakerLayer(fixed(200), breakers=breakers), BreakerLayer(fixed(503), breakers=breakers)
    a, b = inst(1), inst(2)
    await call(ok, a)
    assert breakers.refusing == 0 and breakers(a) and breakers(b)  # callable: it is a gate itself
    await call(failing, a)
    await call(failing, b)
    assert breakers.refusing == 2 and not breakers(a)
    clock.advance(1.0)
    await call(ok, a)  # half-open probe succeeds: closed again
    assert breakers.refusing == 1 and breakers.states() == {a.id: "closed", b.id: "half-open"}
    breakers.forget(b.id)
    assert breakers.refusing == 0
    news = [e.new for e in recorder.of(BreakerTransition)]  # type: ignore[attr-defined]
    assert news == ["open", "open", "half-open", "closed", "half-open"]  # events still reach the bus
