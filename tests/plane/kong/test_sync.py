"""KongSync end to end: a real registry, the Kong double, idempotence, faults and convergence."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest

from meshkit.errors import RegistryUnavailable
from meshkit.plane.kong import KongAdmin, KongSync, KongUnavailable, format_diff
from meshkit.registry import EmbeddedRegistry
from meshkit.types import HealthCheck, ServiceInstance, ServiceState
from tests.doubles.kong_double import KongDouble
from tests.doubles.polling import eventually

H = ServiceState.HEALTHY


def inst(name: str, port: int, state: ServiceState = H, **kw: object) -> ServiceInstance:
    return ServiceInstance(f"{name}-{port}", name, "10.0.0.1", port, state=state, **kw)  # type: ignore[arg-type]


@pytest.fixture
async def registry() -> AsyncIterator[EmbeddedRegistry]:
    reg = EmbeddedRegistry(None)
    await reg.start()
    yield reg
    await reg.close()


@pytest.fixture
def syncer(registry: EmbeddedRegistry, admin: KongAdmin) -> KongSync:
    return KongSync(registry, admin, rng=random.Random(5))


async def test_first_sync_configures_kong_and_the_second_changes_nothing(
    registry: EmbeddedRegistry, syncer: KongSync, kong: KongDouble
) -> None:
    await registry.register(inst("users", 1, weight=30, check=HealthCheck(path="/ready")))
    await registry.register(inst("users", 2))
    await registry.register(inst("users", 3, ServiceState.UNHEALTHY))
    changes = await syncer.sync()
    assert changes and not any(c.error for c in changes)

    service = kong.named("services", "users")
    upstream = kong.named("upstreams", "users-upstream")
    route = kong.named("routes", "users")
    assert service is not None and upstream is not None and route is not None
    assert service["host"] == "users-upstream" and "meshkit" in service["tags"]
    assert route["paths"] == ["/users"] and route["service"] == {"id": service["id"]}
    assert upstream["healthchecks"]["active"]["http_path"] == "/ready"
    assert kong.targets_of("users-upstream") == {"10.0.0.1:1": 30, "10.0.0.1:2": 100}

    writes = len([r for r in kong.requests if r[0] != "GET"])
    assert await syncer.sync() == []  # idempotent
    assert len([r for r in kong.requests if r[0] != "GET"]) == writes  # and wrote nothing


async def test_registry_changes_follow_into_kong(
    registry: EmbeddedRegistry, syncer: KongSync, kong: KongDouble
) -> None:
    await registry.register(inst("users", 1))
    await registry.register(inst("users", 2))
    await registry.register(inst("orders", 3))
    await syncer.sync()
    await registry.set_state("users-1", ServiceState.UNHEALTHY)
    await registry.register(inst("users", 2, weight=5))
    await registry.deregister("orders-3")
    changes = await syncer.sync()
    assert not any(c.error for c in changes)
    assert kong.targets_of("users-upstream") == {"10.0.0.1:2": 5}
    assert kong.named("services", "orders") is None and kong.named("upstreams", "orders-upstream") is None
    assert kong.named("routes", "orders") is None
    assert await syncer.sync() == []


async def test_objects_meshkit_does_not_own_are_left_alone(
    registry: EmbeddedRegistry, syncer: KongSync, admin: KongAdmin, kong: KongDouble
) -> None:
    await admin.put("/services/users", {"host": "legacy.internal"})  # someone else's, untagged
    await admin.put("/services/billing", {"host": "billing.internal"})
    await registry.register(inst("users", 1))
    changes = await syncer.sync()
    conflict = [c for c in changes if c.error]
    assert [(c.kind, c.name) for c in conflict] == [("service", "users")]
    assert "without meshkit's tag" in format_diff(changes)
    assert kong.named("services", "users")["host"] == "legacy.internal"  # type: ignore[index]
    assert kong.named("services", "billing") is not None  # never deleted: not ours


async def test_dry_run_prints_the_diff_and_changes_nothing(
    registry: EmbeddedRegistry, syncer: KongSync, kong: KongDouble
) -> None:
    await registry.register(inst("users", 1, weight=9))
    changes = await syncer.sync(dry_run=True)
    assert format_diff(changes).splitlines() == [
        "+ upstream users-upstream",
        "+ service users",
        "+ route users",
        "+ target 10.0.0.1:1 in users-upstream  (weight 9)",
    ]
    assert all(m == "GET" for m, _ in kong.requests[1:])  # the start-up check, then only reads
    assert kong.entities["services"] == {}


async def test_failed_changes_are_reported_and_retried_next_round(
    registry: EmbeddedRegistry, syncer: KongSync, kong: KongDouble
) -> None:
    await registry.register(inst("users", 1))
    await registry.register(inst("orders", 2))
    kong.fail_next(2, 500, writes_only=True)  # the first two writes fail
    first = await syncer.sync()
    failed = [c for c in first if c.error]
    assert sum("answered 500" in (c.error or "") for c in failed) == 2
    assert [c.kind for c in failed[2:]] == ["target", "target"]  # their upstreams were never created: 404
    assert syncer.last == first
    second = await syncer.sync()
    assert second and not any(c.error for c in second)  # converged
    assert await syncer.sync() == []
    assert kong.targets_of("users-upstream") == {"10.0.0.1:1": 100}
    assert kong.targets_of("orders-upstream") == {"10.0.0.1:2": 100}


async def test_kong_away_raises_and_nothing_is_lost(
    registry: EmbeddedRegistry, syncer: KongSync, kong: KongDouble
) -> None:
    await registry.register(inst("users", 1))
    await kong.stop()
    with pytest.raises(KongUnavailable, match=f"kong at {kong.url}"):
        await syncer.sync()
    await kong.restart()
    assert not any(c.error for c in await syncer.sync())
    assert kong.targets_of("users-upstream") == {"10.0.0.1:1": 100}


async def test_registry_away_deletes_nothing(
    registry: EmbeddedRegistry, syncer: KongSync, kong: KongDouble
) -> None:
    await registry.register(inst("users", 1))
    await syncer.sync()
    await registry.close()
    with pytest.raises(RegistryUnavailable):
        await syncer.sync()
    assert kong.named("services", "users") is not None and kong.targets_of("users-upstream")
    await registry.start()


async def test_run_converges_after_kong_comes_back(
    registry: EmbeddedRegistry, admin: KongAdmin, kong: KongDouble
) -> None:
    syncer = KongSync(registry, admin, rng=random.Random(1), max_backoff=0.05)
    await registry.register(inst("users", 1))
    await kong.stop()
    task = asyncio.create_task(syncer.run(interval=0.02))
    try:
        await asyncio.sleep(0.1)  # a few failing rounds, backing off
        await kong.restart()
        await eventually(lambda: _targets(kong), lambda t: t == {"10.0.0.1:1": 100})
        await registry.register(inst("users", 2))
        await eventually(lambda: _targets(kong), lambda t: len(t) == 2)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _targets(kong: KongDouble) -> dict[str, int]:
    return kong.targets_of("users-upstream")


def test_bad_settings(registry: EmbeddedRegistry, admin: KongAdmin) -> None:
    with pytest.raises(ValueError, match=r"^tag: "):
        KongSync(registry, admin, tag="")
