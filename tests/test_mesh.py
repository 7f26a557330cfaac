"""The seed's facade: ServiceMesh() on the embedded registry, against real upstreams."""

from __future__ import annotations

import asyncio

import pytest

from meshkit import LoadBalancerStrategy, ServiceInstance, ServiceMesh, ServiceRequest, ServiceState
from meshkit.errors import NoHealthyInstances, RegistryUnavailable
from meshkit.types import HealthCheck
from tests.support.servers import status


async def test_register_discover_call_with_no_arguments(upstreams) -> None:
    up = await upstreams("a")
    async with ServiceMesh() as mesh:
        inst = await mesh.register_service("users", "127.0.0.1", up.port, tags=["v1"], metadata={"k": "v"})
        assert isinstance(inst, ServiceInstance)
        assert inst.service_id == f"users-127.0.0.1-{up.port}"
        found = await mesh.discover_services("users")
        assert [i.service_id for i in found] == [inst.service_id]
        result = await mesh.call_service(ServiceRequest("users", path="/u/1"))
    assert result["status_code"] == 200
    assert result["body"] == "a"
    assert result["instance_id"] == inst.service_id
    assert result["duration"] > 0
    assert up.paths == ["/u/1"]


async def test_deregistered_instance_gets_no_calls(upstreams) -> None:
    a, b = await upstreams("a"), await upstreams("b")
    async with ServiceMesh(load_balancer_strategy="round_robin") as mesh:
        ia = await mesh.register_service("svc", "127.0.0.1", a.port)
        await mesh.register_service("svc", "127.0.0.1", b.port)
        assert await mesh.deregister_service(ia.service_id) is True
        assert await mesh.deregister_service(ia.service_id) is False
        await asyncio.sleep(0.05)  # the cache follows the registry by watch
        bodies = [(await mesh.call_service(ServiceRequest("svc")))["body"] for _ in range(4)]
    assert bodies == ["b"] * 4


async def test_active_health_check_takes_a_failing_instance_out(upstreams) -> None:
    good = await upstreams("good")
    bad = await upstreams("bad", status(500))
    check = HealthCheck(
        path="/health", interval=0.05, timeout=0.5, unhealthy_threshold=1, healthy_threshold=1
    )
    async with ServiceMesh() as mesh:
        await mesh.register_service("svc", "127.0.0.1", good.port, check=check)
        ib = await mesh.register_service("svc", "127.0.0.1", bad.port, check=check)
        for _ in range(100):
            states = {i.service_id: i.state for i in await mesh.discover_services("svc")}
            if states[ib.service_id] == ServiceState.UNHEALTHY and ServiceState.HEALTHY in states.values():
                break
            await asyncio.sleep(0.05)
        assert states[ib.service_id] == ServiceState.UNHEALTHY
        bad_hits = bad.hits
        results = [await mesh.call_service(ServiceRequest("svc", path="/work")) for _ in range(6)]
        assert {r["body"] for r in results} == {"good"}
        assert "/work" not in bad.paths[bad_hits - 1 :]
        topo = await mesh.get_service_topology()
    assert topo["services"]["svc"]["total"] == 2
    assert topo["services"]["svc"]["healthy"] == 1
    assert topo["total_instances"] == 2 and topo["healthy_instances"] == 1
    row = next(i for i in topo["services"]["svc"]["instances"] if i["id"] == ib.service_id)
    assert row["state"] == "unhealthy" and row["circuit_breaker"] == "closed"


async def test_heartbeats_keep_a_ttl_checked_instance_healthy(upstreams) -> None:
    up = await upstreams("a")
    check = HealthCheck(kind="ttl", ttl=0.3, healthy_threshold=1, unhealthy_threshold=1)
    async with ServiceMesh() as mesh:
        inst = await mesh.register_service("svc", "127.0.0.1", up.port, check=check)
        seen = []
        for _ in range(12):  # 1.2 s of heartbeats every 0.1 s, inside the 0.3 s ttl
            await mesh.heartbeat(inst.service_id)
            await asyncio.sleep(0.1)
            seen.append((await mesh.discover_services("svc"))[0].state)
        assert seen[-1] == ServiceState.HEALTHY
        assert ServiceState.UNHEALTHY not in seen
        for _ in range(40):  # silence: the ttl runs out
            await asyncio.sleep(0.05)
            if (await mesh.discover_services("svc"))[0].state == ServiceState.UNHEALTHY:
                break
        assert (await mesh.discover_services("svc"))[0].state == ServiceState.UNHEALTHY


async def test_failures_to_register_are_reported() -> None:
    mesh = ServiceMesh()
    await mesh.initialize()
    with pytest.raises(ValueError, match="service_name"):
        await mesh.register_service("Bad Name", "127.0.0.1", 80)
    with pytest.raises(ValueError, match="port"):
        await mesh.register_service("ok", "127.0.0.1", 70000)
    await mesh.shutdown()
    with pytest.raises(RegistryUnavailable):
        await mesh.register_service("ok", "127.0.0.1", 80)


async def test_unknown_service_and_request_validation() -> None:
    async with ServiceMesh() as mesh:
        with pytest.raises(NoHealthyInstances):
            await mesh.call_service(ServiceRequest("ghost"))
    with pytest.raises(ValueError, match="timeout"):
        ServiceRequest("x", timeout=0)
    with pytest.raises(ValueError, match="retry_count"):
        ServiceRequest("x", retry_count=11)
    with pytest.raises(ValueError, match="strategy"):
        ServiceMesh(load_balancer_strategy="fastest")
    assert LoadBalancerStrategy("ip_hash") is LoadBalancerStrategy.IP_HASH


async def test_interceptors_through_the_facade(upstreams) -> None:
    up = await upstreams("a")
    seen: list[str] = []

    async def before(request):  # type: ignore[no-untyped-def]
        seen.append(request.path)

    async def after(response):  # type: ignore[no-untyped-def]
        response.headers["X-Intercepted"] = "yes"

    async with ServiceMesh() as mesh:
        mesh.add_request_interceptor(before)
        mesh.add_response_interceptor(after)
        await mesh.register_service("svc", "127.0.0.1", up.port)
        result = await mesh.call_service(ServiceRequest("svc", path="/z"))
    assert seen == ["/z"]
    assert result["headers"]["X-Intercepted"] == "yes"
