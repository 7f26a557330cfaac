"""The health checker: schedules with jitter, hysteresis through the loop, transitions recorded and
emitted, the watched set reconciled, and real HTTP/TCP checks against servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import itertools
import random
import statistics
from collections import defaultdict
from collections.abc import Callable

import pytest
from aiohttp import web

from meshkit.clock import FakeClock
from meshkit.events import EventBus, EventRecorder, HealthTransition
from meshkit.health import HealthChecker, ProbeResult
from meshkit.types import HealthCheck, ServiceInstance, ServiceState
from tests.support.servers import free_port


def inst(n: int, check: HealthCheck | None = None, port: int | None = None) -> ServiceInstance:
    port = port or 8000 + n
    return ServiceInstance(f"svc-{n}", "svc", "127.0.0.1", port, check=check or HealthCheck(interval=10.0))


class ScriptedProbe:
    """A probe whose answer per instance comes from a function of the call count; records call times."""

    def __init__(self, clock: FakeClock, answer: Callable[[str, int], bool]) -> None:
        self.clock = clock
        self.answer = answer
        self.calls: dict[str, list[float]] = defaultdict(list)

    async def __call__(self, instance: ServiceInstance, check: HealthCheck) -> ProbeResult:
        calls = self.calls[instance.id]
        calls.append(self.clock.monotonic())
        ok = self.answer(instance.id, len(calls) - 1)
        return ProbeResult(ok, "scripted pass" if ok else "scripted fail", 0.0)


async def test_first_checks_are_spread_over_the_interval_and_later_ones_jittered() -> None:
    clock = FakeClock()
    probe = ScriptedProbe(clock, lambda _id, _n: True)
    checker = HealthChecker(clock=clock, rng=random.Random(7), probes={"http": probe})
    for n in range(1000):
        checker.watch(inst(n))
    start = clock.monotonic()
    await checker.start()
    try:
        await clock.run_for(25.0, step=0.1)
    finally:
        await checker.stop()
    firsts = [calls[0] - start for calls in probe.calls.values()]
    assert len(firsts) == 1000
    buckets = [0] * 10
    for t in firsts:
        buckets[min(int(t), 9)] += 1
    assert all(60 <= b <= 140 for b in buckets), buckets  # ~100 each, not 1000 at once
    gaps = [b - a for calls in probe.calls.values() for a, b in itertools.pairwise(calls)]
    assert all(8.9 <= g <= 11.1 for g in gaps)  # interval +-10% (plus the fake clock's step)
    assert statistics.pstdev(gaps) > 0.3  # and actually jittered, not a fixed 10 s


async def test_flapping_through_the_scheduler_changes_state_at_most_once() -> None:
    clock = FakeClock()
    probe = ScriptedProbe(clock, lambda _id, n: n % 2 == 0)
    checker = HealthChecker(clock=clock, rng=random.Random(1), probes={"http": probe}, history_size=10)
    check = HealthCheck(interval=1.0, unhealthy_threshold=3, healthy_threshold=2)
    checker.watch(inst(1, check))
    async with checker:
        await clock.run_for(60.0, step=0.05)
    assert len(probe.calls["svc-1"]) >= 50
    assert [(t.old, t.new) for t in checker.transitions("svc-1")] == [("unknown", "healthy")]
    history = checker.history("svc-1")
    assert len(history) == 10  # bounded
    assert [r.ok for r in history] == [r.ok for r in history[:1]] + [not r.ok for r in history[:-1]]


async def test_transitions_are_recorded_with_times_emitted_and_reported() -> None:
    clock = FakeClock()
    failing_from = 3  # pass, pass, pass, then fail forever
    probe = ScriptedProbe(clock, lambda _id, n: n < failing_from)
    bus = EventBus()
    recorder = EventRecorder(bus)
    seen: list[tuple[str, ServiceState, ServiceState, str, float]] = []

    async def on_transition(i: ServiceInstance, old: ServiceState, new: ServiceState, why: str) -> None:
        seen.append((i.id, old, new, why, clock.time()))

    checker = HealthChecker(
        on_transition=on_transition, bus=bus, clock=clock, rng=random.Random(3), probes={"http": probe}
    )
    instance = inst(1, HealthCheck(interval=2.0, unhealthy_threshold=3, healthy_threshold=2))
    checker.watch(instance)
    async with checker:
        await clock.run_for(20.0, step=0.05)
    calls = probe.calls["svc-1"]
    transitions = checker.transitions("svc-1")
    assert [(t.old, t.new) for t in transitions] == [("unknown", "healthy"), ("healthy", "unhealthy")]
    assert recorder.of(HealthTransition) == transitions
    up, down = ServiceState.HEALTHY, ServiceState.UNHEALTHY
    assert [(s[1], s[2]) for s in seen] == [(ServiceState.UNKNOWN, up), (up, down)]
    wall = clock.time() - clock.monotonic()
    assert transitions[0].at == pytest.approx(calls[0] + wall)  # at the first check
    assert transitions[1].at == pytest.approx(calls[failing_from + 2] + wall)  # at the 3rd failure
    assert [s[4] for s in seen] == [t.at for t in transitions]
    assert "3 in a row failed" in transitions[1].reason
    assert instance.state is ServiceState.UNHEALTHY
    assert checker.state("svc-1") is ServiceState.UNHEALTHY


async def test_sync_reconciles_the_watched_set_and_applies_a_changed_check() -> None:
    clock = FakeClock()
    http = ScriptedProbe(clock, lambda _id, _n: True)
    tcp = ScriptedProbe(clock, lambda _id, _n: False)
    checker = HealthChecker(clock=clock, rng=random.Random(5), probes={"http": http, "tcp": tcp})
    a, b = inst(1), inst(2)
    checker.sync([a, b, ServiceInstance("svc-3", "svc", "127.0.0.1", 9003)])  # no check: not watched
    assert "svc-1" in checker and "svc-2" in checker and len(checker) == 2
    async with checker:
        await clock.run_for(10.0, step=0.1)
        assert checker.state("svc-1") is ServiceState.HEALTHY
        before_b = len(http.calls["svc-2"])
        a2 = ServiceInstance("svc-1", "svc", "127.0.0.1", 8001, check=HealthCheck(kind="tcp", interval=1.0))
        checker.sync([a2])
        await clock.run_for(10.0, step=0.1)
    assert "svc-2" not in checker
    assert len(http.calls["svc-2"]) == before_b  # unwatched: no more probes
    assert len(tcp.calls["svc-1"]) >= 8  # the new check (tcp, every second) took effect
    assert checker.state("svc-1") is ServiceState.UNHEALTHY
    assert [t.new for t in checker.transitions("svc-1")] == ["healthy", "unhealthy"]  # history kept
    with pytest.raises(KeyError, match="instance_id"):
        checker.state("svc-2")


async def test_an_instance_unhealthy_too_long_is_handed_to_on_expired() -> None:
    clock = FakeClock()
    probe = ScriptedProbe(clock, lambda _id, _n: False)
    expired: list[str] = []
    checker = HealthChecker(
        clock=clock, rng=random.Random(2), probes={"http": probe}, on_expired=lambda i: expired.append(i.id)
    )
    checker.watch(inst(1, HealthCheck(interval=5.0, deregister_critical_after=30.0)))
    async with checker:
        await clock.run_for(30.0, step=0.1)
        assert expired == []
        await clock.run_for(30.0, step=0.1)
    assert expired == ["svc-1"]
    assert "svc-1" not in checker


def test_bad_arguments_name_the_field() -> None:
    with pytest.raises(ValueError, match=r"^history_size: must be an integer >= 1"):
        HealthChecker(history_size=0)
    with pytest.raises(ValueError, match=r"^check: instance 'x' has no health check"):
        HealthChecker().watch(ServiceInstance("x", "svc", "127.0.0.1", 1))


async def test_real_http_checks_with_hysteresis(upstreams) -> None:
    answer = {"status": 200}

    async def switchable(request: web.Request) -> web.StreamResponse:
        return web.Response(status=answer["status"])

    up = await upstreams("a", switchable)
    instance = inst(1, HealthCheck(path="/healthz", timeout=1.0, unhealthy_threshold=2), port=up.port)
    checker = HealthChecker(rng=random.Random(0))
    checker.watch(instance)
    try:
        assert (await checker.check_now("svc-1")).ok
        assert checker.state("svc-1") is ServiceState.HEALTHY
        answer["status"] = 500
        record = await checker.check_now("svc-1")
        assert not record.ok and record.detail == "HTTP 500" and record.state is ServiceState.HEALTHY
        assert (await checker.check_now("svc-1")).state is ServiceState.UNHEALTHY
    finally:
        await checker.stop()
    assert up.paths == ["/healthz"] * 3


async def test_the_scheduler_runs_real_tcp_and_http_checks(upstreams) -> None:
    up = await upstreams("a")
    changed: dict[str, asyncio.Event] = defaultdict(asyncio.Event)
    checker = HealthChecker(on_transition=lambda i, _o, _n, _r: changed[i.id].set(), rng=random.Random(0))
    checker.watch(inst(1, HealthCheck(kind="http", interval=0.05, timeout=1.0), port=up.port))
    checker.watch(inst(2, HealthCheck(kind="tcp", interval=0.05, timeout=1.0), port=up.port))
    checker.watch(inst(3, HealthCheck(kind="tcp", interval=0.05, timeout=1.0), port=free_port()))
    async with checker:
        await asyncio.wait_for(asyncio.gather(*(changed[f"svc-{n}"].wait() for n in (1, 2, 3))), 10.0)
    assert checker.state("svc-1") is ServiceState.HEALTHY
    assert checker.state("svc-2") is ServiceState.HEALTHY
    assert checker.state("svc-3") is ServiceState.UNHEALTHY
    assert up.hits >= 1 and set(up.paths) == {"/health"}
