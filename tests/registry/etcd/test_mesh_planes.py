"""Two ServiceMesh planes on one etcd: registrations seen by both, one health checker between them."""

from __future__ import annotations

import asyncio

from meshkit.mesh import ServiceMesh
from meshkit.registry.etcd import EtcdRegistry
from meshkit.types import HealthCheck, ServiceState
from tests.registry.etcd.cluster import EtcdCluster
from tests.registry.etcd.conftest import fresh_prefix
from tests.support.servers import status


async def until(predicate, within: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while loop.time() < end:
        if await predicate():
            return True
        await asyncio.sleep(0.05)
    return False


def plane(single: EtcdCluster, prefix: str) -> ServiceMesh:
    backend = EtcdRegistry(single.endpoints, prefix=prefix, timeout=2.0)
    return ServiceMesh(registry=backend)


async def test_two_planes_share_registrations_and_elect_one_health_checker(
    single: EtcdCluster, upstreams
) -> None:
    prefix = fresh_prefix()
    bad = await upstreams("bad", status(500))
    a, b = plane(single, prefix), plane(single, prefix)
    await a.initialize()
    await b.initialize()
    try:
        check = HealthCheck(interval=0.1, timeout=0.5, unhealthy_threshold=1, healthy_threshold=1)
        inst = await a.register_service("svc", "127.0.0.1", bad.port, check=check)

        async def seen_by_b() -> bool:
            return [i.service_id for i in await b.discover_services("svc", use_cache=False)] == [
                inst.service_id
            ]

        assert await until(seen_by_b, within=1.0)  # within 1 s through the other plane

        async def one_active() -> bool:
            return sum(p.health is not None and p.health.active for p in (a, b)) == 1

        assert await until(one_active)

        async def marked_unhealthy() -> bool:
            found = await b.discover_services("svc", use_cache=False)
            return bool(found) and found[0].state == ServiceState.UNHEALTHY

        assert await until(marked_unhealthy)
        leader, standby = (a, b) if a.health and a.health.active else (b, a)
        assert standby.health is not None and len(standby.health.checker) == 0  # the standby probes nothing
        await leader.shutdown()  # resigns: the standby takes over the checks

        async def took_over() -> bool:
            return standby.health is not None and standby.health.active and len(standby.health.checker) == 1

        assert await until(took_over)
    finally:
        await a.shutdown()
        await b.shutdown()
