"""TTL checks: the instance reports itself; silence past the ttl marks it unhealthy (fake clock)."""

from __future__ import annotations

import random

import pytest

from meshkit.clock import FakeClock
from meshkit.events import EventBus, EventRecorder, HealthTransition
from meshkit.health import HealthChecker
from meshkit.types import HealthCheck, ServiceInstance, ServiceState


def ttl_instance(ttl: float = 5.0) -> ServiceInstance:
    return ServiceInstance("svc-1", "svc", "127.0.0.1", 8001, check=HealthCheck(kind="ttl", ttl=ttl))


async def test_silence_past_the_ttl_marks_unhealthy_and_a_report_brings_it_back() -> None:
    clock = FakeClock()
    bus = EventBus()
    recorder = EventRecorder(bus)
    checker = HealthChecker(clock=clock, bus=bus, rng=random.Random(0))
    checker.watch(ttl_instance(5.0))
    t0 = clock.time()
    async with checker:
        await checker.report_ttl("svc-1", "pass")
        assert checker.state("svc-1") is ServiceState.HEALTHY
        await clock.run_for(4.0, step=0.1)
        await checker.report_ttl("svc-1", "pass")  # heartbeat at t=4: deadline moves to t=9
        await clock.run_for(4.5, step=0.1)
        assert checker.state("svc-1") is ServiceState.HEALTHY
        await clock.run_for(1.0, step=0.1)
        assert checker.state("svc-1") is ServiceState.UNHEALTHY
        await clock.run_for(20.0, step=0.1)  # staying silent does not repeat the transition
        await checker.report_ttl("svc-1", "pass", "back")
        await clock.run_for(4.0, step=0.1)
    transitions = recorder.of(HealthTransition)
    assert [(t.old, t.new) for t in transitions] == [  # type: ignore[attr-defined]
        ("unknown", "healthy"),
        ("healthy", "unhealthy"),
        ("unhealthy", "healthy"),
    ]
    assert transitions == checker.transitions("svc-1")
    expiry = checker.transitions("svc-1")[1]
    assert "ttl expired" in expiry.reason
    assert expiry.at == pytest.approx(t0 + 9.0, abs=0.11)  # last report at t=4 plus the 5 s ttl
    assert checker.transitions("svc-1")[2].reason == "ttl report pass: back"


async def test_a_new_instance_that_never_reports_expires_after_one_ttl() -> None:
    clock = FakeClock()
    checker = HealthChecker(clock=clock)
    checker.watch(ttl_instance(3.0))
    async with checker:
        await clock.run_for(2.9, step=0.1)
        assert checker.state("svc-1") is ServiceState.UNKNOWN
        await clock.run_for(0.3, step=0.1)
        assert checker.state("svc-1") is ServiceState.UNHEALTHY


async def test_warn_is_degraded_and_fail_is_unhealthy() -> None:
    clock = FakeClock()
    checker = HealthChecker(clock=clock)
    instance = ttl_instance()
    checker.watch(instance)
    await checker.report_ttl("svc-1", "warn", "disk 91% full")
    assert checker.state("svc-1") is ServiceState.DEGRADED and instance.state is ServiceState.DEGRADED
    await checker.report_ttl("svc-1", "fail")
    assert checker.state("svc-1") is ServiceState.UNHEALTHY
    history = checker.history("svc-1")
    assert [(r.ok, r.detail, r.state) for r in history] == [
        (True, "ttl report warn: disk 91% full", ServiceState.DEGRADED),
        (False, "ttl report fail", ServiceState.UNHEALTHY),
    ]


async def test_bad_reports_are_refused() -> None:
    checker = HealthChecker(clock=FakeClock())
    checker.watch(ttl_instance())
    checker.watch(ServiceInstance("svc-2", "svc", "127.0.0.1", 8002, check=HealthCheck(kind="http")))
    with pytest.raises(ValueError, match=r"^status: must be one of pass, warn, fail"):
        await checker.report_ttl("svc-1", "ok")
    with pytest.raises(ValueError, match=r"^instance_id: 'svc-2' has a http check"):
        await checker.report_ttl("svc-2", "pass")
    with pytest.raises(KeyError, match="instance_id"):
        await checker.report_ttl("nope", "pass")
    with pytest.raises(ValueError, match=r"^instance_id: 'svc-1' has a ttl check"):
        await checker.check_now("svc-1")
