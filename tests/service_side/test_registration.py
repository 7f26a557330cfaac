"""ServiceRegistration's lifecycle: retries while the registry is down, re-registers when forgotten."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from meshkit.errors import RegistryUnavailable
from meshkit.registry.base import AddressPolicy
from meshkit.registry.embedded import EmbeddedRegistry
from meshkit.service_side import ServiceRegistration, heartbeat_every
from meshkit.types import HealthCheck, ServiceInstance


class DownAtFirst(EmbeddedRegistry):
    """A real in-memory registry that refuses the first `failures` registrations as unreachable."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def register(
        self, instance: ServiceInstance, *, address_policy: AddressPolicy | None = None
    ) -> ServiceInstance:
        if self.failures > 0:
            self.failures -= 1
            raise RegistryUnavailable("registry down (test)")
        return await super().register(instance, address_policy=address_policy)


@pytest.fixture
async def registry() -> AsyncIterator[EmbeddedRegistry]:
    reg = EmbeddedRegistry()
    await reg.start()
    yield reg
    await reg.close()


async def wait_for(predicate: object, within: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while not predicate():  # type: ignore[operator]
        assert loop.time() < end, "condition not reached in time"
        await asyncio.sleep(0.01)


async def test_registers_heartbeats_and_deregisters(registry: EmbeddedRegistry) -> None:
    reg = ServiceRegistration(registry, "orders", "127.0.0.1", 9001, tags=["v2"], heartbeat_interval=0.02)
    async with reg:
        found = await registry.get("orders-127.0.0.1-9001")
        assert found is not None and found.tags == ["v2"]
        await wait_for(lambda: reg.heartbeats >= 3)
    assert await registry.get("orders-127.0.0.1-9001") is None
    assert not reg.registered


async def test_a_registry_down_at_start_up_is_retried_in_the_background() -> None:
    registry = DownAtFirst(failures=2)
    await registry.start()
    reg = ServiceRegistration(registry, "late", "127.0.0.1", 9002, heartbeat_interval=0.02)
    try:
        await reg.start()  # does not raise: the service starts anyway
        assert not reg.registered
        await wait_for(lambda: reg.registered)
        assert await registry.get("late-127.0.0.1-9002") is not None
    finally:
        await reg.stop()
        await registry.close()


async def test_a_forgotten_instance_is_registered_again(registry: EmbeddedRegistry) -> None:
    reg = ServiceRegistration(registry, "again", "127.0.0.1", 9003, heartbeat_interval=0.02)
    async with reg:
        await registry.deregister(reg.service_id)  # the registry lost it (expired, restarted)

        async def back() -> bool:
            return await registry.get(reg.service_id) is not None

        for _ in range(300):
            if await back():
                break
            await asyncio.sleep(0.01)
        assert await back()


async def test_refusals_are_raised_from_start(registry: EmbeddedRegistry) -> None:
    def refuse(address: str) -> None:
        raise ValueError(f"address: {address} is not allowed")

    class Refusing(EmbeddedRegistry):
        async def register(
            self, instance: ServiceInstance, *, address_policy: AddressPolicy | None = None
        ) -> ServiceInstance:
            return await super().register(instance, address_policy=refuse)

    strict = Refusing()
    await strict.start()
    reg = ServiceRegistration(strict, "refused", "127.0.0.1", 9004)
    try:
        with pytest.raises(ValueError, match="not allowed"):
            await reg.start()
    finally:
        await reg.stop()
        await strict.close()


def test_heartbeat_interval_follows_the_ttl() -> None:
    assert heartbeat_every(None, None, None) == 10.0
    assert heartbeat_every(9.0, None, None) == 3.0
    assert heartbeat_every(30.0, HealthCheck(kind="ttl", ttl=6.0), None) == 2.0
    assert heartbeat_every(9.0, None, 0.5) == 0.5
    with pytest.raises(ValueError, match=r"^heartbeat_interval"):
        heartbeat_every(None, None, 0)
