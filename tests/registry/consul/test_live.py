"""Live tests against a real Consul agent: run only when CONSUL_HTTP_ADDR is set.

    consul agent -dev &                      # or any agent you may write to
    CONSUL_HTTP_ADDR=127.0.0.1:8500 .venv/bin/pytest -m consul tests/registry/consul

CONSUL_HTTP_TOKEN is used when the agent has ACLs on. Every instance these tests register
is named meshkit-live-* and deregistered at the end.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator

import pytest

from meshkit.registry.consul import ConsulRegistry
from meshkit.types import HealthCheck, ServiceInstance, ServiceState
from tests.doubles.polling import eventually

ADDR = os.environ.get("CONSUL_HTTP_ADDR", "")
pytestmark = [
    pytest.mark.consul,
    pytest.mark.skipif(not ADDR, reason="CONSUL_HTTP_ADDR is not set: no live Consul agent to test against"),
]


def consul_url() -> str:
    if ADDR.startswith("https://"):
        return "consul+https://" + ADDR.removeprefix("https://")
    return "consul://" + ADDR.removeprefix("http://")


@pytest.fixture
async def live() -> AsyncIterator[tuple[ConsulRegistry, str]]:
    reg = ConsulRegistry.from_url(consul_url(), wait="5s")
    await reg.start()
    name = f"meshkit-live-{uuid.uuid4().hex[:8]}"
    yield reg, name
    for inst in (await reg.instances(name)).instances:
        await reg.deregister(inst.service_id)
    await reg.close()


async def test_register_read_heartbeat_deregister(live: tuple[ConsulRegistry, str]) -> None:
    reg, name = live
    inst = ServiceInstance(f"{name}-1", name, "127.0.0.1", 9, metadata={"team": "core"}, weight=3,
                           check=HealthCheck(kind="ttl", ttl=30))  # fmt: skip
    record = await reg.register(inst)
    assert record.state == ServiceState.UNHEALTHY  # Consul starts checks critical
    await reg.heartbeat(inst.service_id)
    snap = await eventually(lambda: reg.instances(name), lambda s: len(s.healthy) == 1)
    assert snap.instances[0].metadata == {"team": "core"} and snap.instances[0].weight == 3
    assert (await reg.passing(name)).instances[0].service_id == inst.service_id
    assert (await reg.services())[name] == 1
    assert await reg.deregister(inst.service_id) is True
    await eventually(lambda: reg.instances(name), lambda s: s.instances == ())


async def test_watch_sees_a_registration(live: tuple[ConsulRegistry, str]) -> None:
    reg, name = live
    watch = reg.watch(name)
    assert (await asyncio.wait_for(anext(watch), 10)).instances == ()
    await reg.register(ServiceInstance(f"{name}-2", name, "127.0.0.1", 10))
    snap = await asyncio.wait_for(anext(watch), 10)
    assert [i.service_id for i in snap.instances] == [f"{name}-2"]
    await watch.aclose()
