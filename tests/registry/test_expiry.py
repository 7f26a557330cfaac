"""Expiry on a fake clock: missed TTL heartbeats and instances critical for too long."""

from __future__ import annotations

import asyncio

from meshkit.clock import FakeClock
from meshkit.registry import EmbeddedRegistry
from meshkit.types import HealthCheck, ServiceState
from tests.registry.conftest import inst


async def test_ttl_instance_expires_without_heartbeats(registry: EmbeddedRegistry, clock: FakeClock) -> None:
    await registry.register(inst(port=1, ttl=10.0))
    await registry.register(inst(port=2))  # no ttl: never expires by time
    clock.advance(9.9)
    assert await registry.expire_now() == 0
    clock.advance(0.2)
    assert await registry.expire_now() == 1
    assert [i.port for i in await registry.all_instances()] == [2]


async def test_heartbeats_keep_a_ttl_instance(registry: EmbeddedRegistry, clock: FakeClock) -> None:
    record = await registry.register(inst(ttl=10.0))
    for _ in range(5):
        clock.advance(8.0)
        await registry.heartbeat(record.id)
        assert await registry.expire_now() == 0
    clock.advance(10.0)
    assert await registry.expire_now() == 1
    assert await registry.get(record.id) is None


async def test_critical_instance_deregistered_after_the_window(
    registry: EmbeddedRegistry, clock: FakeClock
) -> None:
    record = await registry.register(inst())
    await registry.set_state(record.id, ServiceState.UNHEALTHY, "probe failed")
    clock.advance(59.0)
    await registry.set_state(record.id, ServiceState.UNHEALTHY)  # still critical: window not restarted
    assert await registry.expire_now() == 0
    clock.advance(1.0)
    assert await registry.expire_now() == 1


async def test_recovery_resets_the_critical_window(registry: EmbeddedRegistry, clock: FakeClock) -> None:
    record = await registry.register(inst(check=HealthCheck(deregister_critical_after=5.0)))
    await registry.set_state(record.id, ServiceState.UNHEALTHY)
    clock.advance(4.0)
    await registry.set_state(record.id, ServiceState.HEALTHY)
    await registry.set_state(record.id, ServiceState.UNHEALTHY)
    clock.advance(4.0)
    assert await registry.expire_now() == 0  # the check's own 5 s window, restarted
    clock.advance(1.0)
    assert await registry.expire_now() == 1


async def test_background_reaper_runs_on_the_clock(registry: EmbeddedRegistry, clock: FakeClock) -> None:
    await registry.register(inst(ttl=3.0))
    watch = registry.watch("users")
    assert len((await anext(watch)).instances) == 1
    clock.advance(3.5)  # wakes the reaper's sleeps; it expires the instance and the watch sees it
    snap = await asyncio.wait_for(anext(watch), 5.0)
    assert snap.instances == ()
    await watch.aclose()
