"""ConsulRegistry against the Consul double (a real HTTP server built from Consul's API docs)."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from meshkit.errors import RegistryUnavailable
from meshkit.registry import CachedRegistry, Registry, UnknownInstance
from meshkit.registry.consul import ConsulRegistry
from meshkit.types import HealthCheck, ServiceInstance, ServiceState
from tests.conftest import StartUpstream
from tests.doubles.consul_double import ConsulDouble
from tests.doubles.polling import eventually
from tests.support.servers import free_port, status


def inst(name: str = "users", port: int = 8000, **kw: Any) -> ServiceInstance:
    address = str(kw.pop("address", "127.0.0.1"))
    return ServiceInstance(str(kw.pop("service_id", f"{name}-{address}-{port}")), name, address, port, **kw)


def ttl_check(ttl: float = 30.0) -> HealthCheck:
    return HealthCheck(kind="ttl", ttl=ttl)


def test_is_a_registry(registry: ConsulRegistry) -> None:
    assert isinstance(registry, Registry)


# -- start-up: a clear message naming the address


async def test_unreachable_agent_names_the_address() -> None:
    address = f"127.0.0.1:{free_port()}"
    reg = ConsulRegistry(address, timeout=1.0)
    with pytest.raises(RegistryUnavailable, match=rf"consul at http://{address}: GET /v1/agent/self failed"):
        await reg.start()
    with pytest.raises(RegistryUnavailable, match="not running"):
        await reg.instances("users")


async def test_something_else_at_the_address_is_named(upstreams: StartUpstream) -> None:
    up = await upstreams("not-consul")
    reg = ConsulRegistry(f"127.0.0.1:{up.port}")
    with pytest.raises(
        RegistryUnavailable, match=r"did not answer as a Consul agent does.*Consul's HTTP address"
    ):
        await reg.start()
    up404 = await upstreams("nginx-404", status(404))
    with pytest.raises(RegistryUnavailable, match=r"status 404"):
        await ConsulRegistry(f"127.0.0.1:{up404.port}").start()


async def test_too_old_a_version_is_refused(consul: ConsulDouble) -> None:
    consul.version = "1.4.2"
    with pytest.raises(RegistryUnavailable, match=r"version '1.4.2' is too old; meshkit needs >= 1.7"):
        await ConsulRegistry(consul.address).start()


async def test_no_leader_is_refused(consul: ConsulDouble) -> None:
    consul.leader = ""
    with pytest.raises(RegistryUnavailable, match="no leader"):
        await ConsulRegistry(consul.address).start()


# -- ACL token


async def test_acl_token_is_sent_and_a_wrong_one_is_reported() -> None:
    double = ConsulDouble(token="s3cret")
    await double.start()
    try:
        with pytest.raises(RegistryUnavailable, match="ACL token rejected"):
            await ConsulRegistry(double.address, token="wrong").start()
        with pytest.raises(RegistryUnavailable, match="Permission denied"):
            await ConsulRegistry(double.address).start()
        async with ConsulRegistry(double.address, token="s3cret") as reg:
            await reg.register(inst())
            assert [i.port for i in (await reg.instances("users")).instances] == [8000]
    finally:
        await double.close()


def test_from_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "from-env")
    reg = ConsulRegistry.from_url("consul://consul.internal:8501")
    assert reg.url == "http://consul.internal:8501" and reg._http._headers == {"X-Consul-Token": "from-env"}
    assert ConsulRegistry.from_url("consul+https://10.0.0.5", token="t").url == "https://10.0.0.5:8500"
    assert ConsulRegistry.from_url("consul://[::1]:8500").url == "http://[::1]:8500"
    for bad in ("http://x:8500", "consul://", "consul://h:99999", "consul://h:1/path", 7):
        with pytest.raises(ValueError, match=r"^registry: "):
            ConsulRegistry.from_url(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"address": "nohost"}, "address"),
        ({"scheme": "ftp"}, "scheme"),
        ({"timeout": 0}, "timeout"),
        ({"wait": "1h"}, "wait"),
    ],
)
def test_bad_settings_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field}: "):
        ConsulRegistry(**kwargs)


# -- writes and reads


async def test_register_sends_consul_service_definition(
    registry: ConsulRegistry, consul: ConsulDouble
) -> None:
    record = await registry.register(inst(tags=["v1"], metadata={"team": "core"}, weight=5, zone="eu"))
    stored = consul.services["users-127.0.0.1-8000"]
    assert stored["Service"] == "users" and stored["Tags"] == ["v1"] and stored["Weights"]["Passing"] == 5
    assert stored["Meta"] == {"team": "core", "meshkit-weight": "5", "meshkit-zone": "eu"}
    assert ("PUT", "/v1/agent/service/register?replace-existing-checks=true") in consul.requests
    assert record.state == ServiceState.HEALTHY  # no check: Consul counts it passing
    assert (record.weight, record.zone, record.metadata) == (5, "eu", {"team": "core"})


async def test_bad_input_is_refused_before_consul(registry: ConsulRegistry, consul: ConsulDouble) -> None:
    with pytest.raises(ValueError, match=r"^metadata: "):
        await registry.register(inst(metadata={"dotted.key": "v"}))
    with pytest.raises(ValueError, match=r"^address: "):
        await registry.register(inst(address="http://x", service_id="bad-address"))

    def refuse(address: str) -> None:
        raise ValueError(f"address: {address} is refused by policy")

    with pytest.raises(ValueError, match="refused by policy"):
        await registry.register(inst(), address_policy=refuse)
    assert consul.services == {}


async def test_deregister_and_unknown_ids(registry: ConsulRegistry, consul: ConsulDouble) -> None:
    await registry.register(inst(service_id="odd:id%1@[x]"))
    assert await registry.get("odd:id%1@[x]") is not None  # path-encoded correctly
    assert await registry.deregister("odd:id%1@[x]") is True
    assert await registry.deregister("odd:id%1@[x]") is False
    assert await registry.get("odd:id%1@[x]") is None
    assert consul.services == {}


async def test_instances_show_every_state_and_passing_filters(
    registry: ConsulRegistry, consul: ConsulDouble
) -> None:
    await registry.register(inst(port=1, check=ttl_check(), state=ServiceState.HEALTHY))
    await registry.register(inst(port=2, check=ttl_check(), state=ServiceState.DEGRADED))
    await registry.register(inst(port=3, check=ttl_check()))  # Consul starts a check critical
    snap = await registry.instances("users")
    assert [(i.port, i.state) for i in snap.instances] == [
        (1, ServiceState.HEALTHY), (2, ServiceState.DEGRADED), (3, ServiceState.UNHEALTHY),
    ]  # fmt: skip
    assert snap.revision == consul.service_index["users"]
    assert [i.port for i in snap.healthy] == [1]
    assert [i.port for i in (await registry.passing("users")).instances] == [1]
    assert ("GET", "/v1/health/service/users?passing=1") in consul.requests


async def test_services_and_all_instances_leave_out_consul_itself(registry: ConsulRegistry) -> None:
    await registry.register(inst("users", 1))
    await registry.register(inst("users", 2))
    await registry.register(inst("orders", 3))
    assert await registry.services() == {"orders": 1, "users": 2}
    assert sorted(i.port for i in await registry.all_instances()) == [1, 2, 3]


async def test_http_check_is_run_by_the_agent(registry: ConsulRegistry, upstreams: StartUpstream) -> None:
    up = await upstreams("users")
    check = HealthCheck(
        path="/health", interval=0.05, timeout=1.0, healthy_threshold=1, unhealthy_threshold=1
    )
    await registry.register(inst(port=up.port, check=check))
    await eventually(lambda: registry.instances("users"), lambda s: len(s.healthy) == 1)
    assert "/health" in up.paths
    await up.stop()  # the instance dies: the agent's probe fails
    await eventually(
        lambda: registry.instances("users"), lambda s: s.instances[0].state == ServiceState.UNHEALTHY
    )


async def test_heartbeat_passes_the_ttl_check(registry: ConsulRegistry) -> None:
    record = await registry.register(inst(check=ttl_check()))
    assert record.state == ServiceState.UNHEALTHY
    await registry.heartbeat(record.service_id)
    got = await registry.get(record.service_id)
    assert got is not None and got.state == ServiceState.HEALTHY
    with pytest.raises(UnknownInstance):
        await registry.heartbeat("nobody")


async def test_ttl_runs_out_when_heartbeats_stop(registry: ConsulRegistry) -> None:
    record = await registry.register(inst(ttl=0.2, state=ServiceState.HEALTHY))
    assert record.state == ServiceState.HEALTHY and record.ttl == 0.2
    await eventually(
        lambda: registry.get(record.service_id), lambda i: i is not None and i.state == ServiceState.UNHEALTHY
    )


async def test_heartbeat_for_an_agent_run_check_is_a_no_op(
    registry: ConsulRegistry, consul: ConsulDouble
) -> None:
    await registry.register(inst(check=HealthCheck(kind="tcp", interval=60)))
    await registry.heartbeat("users-127.0.0.1-8000")
    assert not any("/agent/check/pass" in path for _, path in consul.requests)


async def test_set_state_on_ttl_checks(registry: ConsulRegistry, consul: ConsulDouble) -> None:
    await registry.register(inst(check=ttl_check(), state=ServiceState.HEALTHY))
    got = await registry.set_state("users-127.0.0.1-8000", ServiceState.DEGRADED, "slow disk")
    assert got is not None and got.state == ServiceState.DEGRADED
    assert consul.checks["service:users-127.0.0.1-8000"]["Output"] == "slow disk"
    got = await registry.set_state("users-127.0.0.1-8000", ServiceState.UNHEALTHY)
    assert got is not None and got.state == ServiceState.UNHEALTHY
    assert await registry.set_state("nobody", ServiceState.HEALTHY) is None
    with pytest.raises(ValueError, match=r"^state: "):
        await registry.set_state("users-127.0.0.1-8000", ServiceState.UNKNOWN)
    with pytest.raises(ValueError, match=r"^state: "):
        await registry.set_state("users-127.0.0.1-8000", "sleepy")  # type: ignore[arg-type]


async def test_set_state_uses_maintenance_for_agent_run_checks(
    registry: ConsulRegistry, consul: ConsulDouble
) -> None:
    await registry.register(inst())
    got = await registry.set_state("users-127.0.0.1-8000", ServiceState.UNHEALTHY, "draining")
    assert got is not None and got.state == ServiceState.UNHEALTHY
    assert consul.checks["_service_maintenance:users-127.0.0.1-8000"]["Notes"] == "draining"
    got = await registry.set_state("users-127.0.0.1-8000", ServiceState.HEALTHY)
    assert got is not None and got.state == ServiceState.HEALTHY
    with pytest.raises(ValueError, match=r"^state: .*only healthy or unhealthy"):
        await registry.set_state("users-127.0.0.1-8000", ServiceState.DEGRADED)


# -- watch: blocking queries


async def next_of(it: Any) -> Any:
    return await asyncio.wait_for(anext(it), 10.0)


async def test_watch_blocks_with_index_and_wait_and_yields_changes(
    registry: ConsulRegistry, consul: ConsulDouble
) -> None:
    watch = registry.watch("users")
    first = await next_of(watch)
    assert first.instances == ()
    pending = asyncio.ensure_future(next_of(watch))
    await eventually(lambda: _sleep_list(consul.requests), lambda r: any("index=" in p for _, p in r))
    assert not pending.done()  # the request is held by the agent
    blocking = [p for _, p in consul.requests if "index=" in p][-1]
    assert f"index={first.revision}" in blocking and "wait=2s" in blocking
    await registry.register(inst(port=1))
    snap = await pending
    assert [i.port for i in snap.instances] == [1] and snap.revision > first.revision
    await registry.set_state("users-127.0.0.1-1", ServiceState.UNHEALTHY)
    snap = await next_of(watch)
    assert snap.instances[0].state == ServiceState.UNHEALTHY
    await watch.aclose()


async def _sleep_list(value: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return value


async def test_watch_survives_the_index_going_backwards(
    registry: ConsulRegistry, consul: ConsulDouble
) -> None:
    await registry.register(inst(port=1))
    watch = registry.watch("users")
    await next_of(watch)
    n = len(consul.requests)
    consul.reset_index(to=2)  # a snapshot restore: every index is now lower than the watcher's
    await registry.register(inst(port=2))  # index 3
    snap = await next_of(watch)  # Consul holds the old index until wait runs out, then answers 3
    assert sorted(i.port for i in snap.instances) == [1, 2]
    await registry.register(inst(port=3))
    snap = await next_of(watch)
    assert sorted(i.port for i in snap.instances) == [1, 2, 3]
    after = [p for m, p in consul.requests[n:] if m == "GET" and p.startswith("/v1/health/service/")]
    # the old index was held until wait ran out; the lower answer reset the index to 0: a plain read
    assert after == ["/v1/health/service/users?index=11&wait=2s", "/v1/health/service/users"]
    await watch.aclose()


async def test_watch_all_follows_registrations_and_check_changes(registry: ConsulRegistry) -> None:
    watch = registry.watch()
    assert (await next_of(watch)).instances == ()
    await registry.register(inst("users", 1, check=ttl_check(), state=ServiceState.HEALTHY))
    snap = await next_of(watch)
    assert [(i.service_name, i.state) for i in snap.instances] == [("users", ServiceState.HEALTHY)]
    await registry.set_state("users-127.0.0.1-1", ServiceState.DEGRADED)  # a check change only
    snap = await next_of(watch)
    assert snap.instances[0].state == ServiceState.DEGRADED
    await registry.register(inst("orders", 2))
    snap = await next_of(watch)
    assert sorted(i.service_name for i in snap.instances) == ["orders", "users"]
    await watch.aclose()


async def test_watch_raises_when_consul_fails(registry: ConsulRegistry, consul: ConsulDouble) -> None:
    watch = registry.watch("users")
    await next_of(watch)
    consul.fail_next(5, status=500)
    await registry.close()  # also ends watches: the next poll fails
    with pytest.raises(RegistryUnavailable):
        await next_of(watch)


# -- faults


async def test_5xx_and_dropped_connections_map_to_registry_unavailable(
    registry: ConsulRegistry, consul: ConsulDouble
) -> None:
    consul.fail_next(1, status=500)
    with pytest.raises(RegistryUnavailable, match=rf"consul at http://{consul.address}: .* answered 500"):
        await registry.instances("users")
    consul.drop_next(2)  # aiohttp retries an idempotent request once on a dropped keep-alive connection
    with pytest.raises(RegistryUnavailable, match=rf"consul at http://{consul.address}"):
        await registry.register(inst())
    consul.clear_faults()
    await registry.register(inst())  # and the next call works again
    assert await registry.services() == {"users": 1}


async def test_agent_gone_then_back_behind_the_cache(consul: ConsulDouble) -> None:
    """Reads from cache, writes refused, recovery without a restart (the issue's fault story)."""
    consul_reg = ConsulRegistry(consul.address, wait="2s", rate_limit=0.0, timeout=1.0)
    cache = CachedRegistry(
        consul_reg, rng=random.Random(3), base_backoff=0.02, max_backoff=0.1, owns_registry=True
    )
    await cache.start()
    try:
        await cache.register(inst(port=1))
        assert [i.port for i in (await cache.discover("users")).instances] == [1]
        await consul.stop()
        await eventually(lambda: cache.discover("users"), lambda s: s.stale)
        assert [i.port for i in await cache.resolve("users")] == [1]
        with pytest.raises(RegistryUnavailable):
            await cache.register(inst(port=2))
        assert not cache.connected

        await consul.restart()
        consul.services.clear()  # Consul came back with different data: the cache must follow it
        await consul_reg.register(inst(port=3))
        snap = await eventually(lambda: cache.discover("users"), lambda s: not s.stale)
        assert [i.port for i in snap.instances] == [3] and cache.connected
        await cache.register(inst(port=4))  # writes work again, and update the cache
        assert sorted(i.port for i in (await cache.discover("users")).instances) == [3, 4]
    finally:
        await cache.close()
