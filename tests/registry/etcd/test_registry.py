"""EtcdRegistry against a real etcd member: the Registry contract, leases, watches, resync, reaping."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from meshkit.clock import FakeClock
from meshkit.registry import CachedRegistry, Registry, Snapshot, UnknownInstance
from meshkit.registry.etcd import EtcdRegistry
from meshkit.types import HealthCheck, ServiceState
from tests.registry.conftest import inst
from tests.registry.etcd.cluster import EtcdCluster

BOUND = 10.0  # seconds: a guard against hanging, never a speed assertion


def ports(snap: Snapshot) -> list[int]:
    return sorted(i.port for i in snap.instances)


async def test_is_a_registry_and_round_trips_every_field(etcd: EtcdRegistry) -> None:
    assert isinstance(etcd, Registry)
    check = HealthCheck(kind="tcp", interval=3.0, deregister_critical_after=9.0)
    original = inst(
        port=8001, tags=["a", "b"], metadata={"k": "v"}, weight=7, zone="z1", version="v2", check=check
    )
    await etcd.register(original)
    got = await etcd.get(original.service_id)
    assert got is not None and got is not original
    assert (got.service_name, got.address, got.port, got.tags, got.metadata) == (
        "users", "10.0.0.1", 8001, ["a", "b"], {"k": "v"},
    )  # fmt: skip
    assert (got.weight, got.zone, got.version, got.check, got.ttl) == (7, "z1", "v2", check, None)
    assert await etcd.get("nobody") is None


async def test_register_discover_deregister(etcd: EtcdRegistry) -> None:
    for port in (1, 2, 3):
        await etcd.register(inst(port=port))
    await etcd.register(inst("orders", port=9))
    snap = await etcd.instances("users")
    assert ports(snap) == [1, 2, 3] and snap.revision == etcd.revision > 0
    assert await etcd.services() == {"users": 3, "orders": 1}
    assert len(await etcd.all_instances()) == 4
    assert await etcd.deregister("users-10.0.0.1-2") is True
    assert await etcd.deregister("users-10.0.0.1-2") is False
    assert ports(await etcd.instances("users")) == [1, 3]
    assert (await etcd.instances("nothing")).instances == ()


async def test_reregistering_an_id_under_another_service_moves_it(etcd: EtcdRegistry) -> None:
    await etcd.register(inst(port=1, service_id="x"))
    await etcd.register(inst("orders", port=2, service_id="x"))
    assert (await etcd.instances("users")).instances == ()
    assert ports(await etcd.instances("orders")) == [2]
    got = await etcd.get("x")
    assert got is not None and got.service_name == "orders"


async def test_set_state_keeps_the_lease_and_returns_the_record(etcd: EtcdRegistry) -> None:
    await etcd.register(inst(port=1, ttl=30))
    new = await etcd.set_state("users-10.0.0.1-1", ServiceState.HEALTHY, "probe ok")
    assert new is not None and new.state == ServiceState.HEALTHY
    assert (await etcd.instances("users")).healthy == (new,)
    await etcd.heartbeat("users-10.0.0.1-1")  # the lease is still attached after the state write
    assert await etcd.set_state("nobody", ServiceState.HEALTHY) is None
    with pytest.raises(ValueError, match=r"^state: must be one of"):
        await etcd.set_state("users-10.0.0.1-1", "sleepy")  # type: ignore[arg-type]


async def test_bad_input_is_refused_before_anything_is_written(etcd: EtcdRegistry) -> None:
    bad = inst(port=1)
    bad.tags = ["no spaces"]
    with pytest.raises(ValueError, match=r"^tags:"):
        await etcd.register(bad)

    def refuse(address: str) -> None:
        raise ValueError(f"address: {address} is not allowed")

    with pytest.raises(ValueError, match=r"^address:"):
        await etcd.register(inst(port=2), address_policy=refuse)
    assert await etcd.all_instances() == []


async def test_ttl_instance_expires_without_heartbeats_and_lives_with_them(etcd: EtcdRegistry) -> None:
    await etcd.register(inst(port=1, ttl=1))
    await etcd.register(inst(port=2, ttl=1))
    watch = etcd.watch("users")
    try:
        assert ports(await anext(watch)) == [1, 2]

        async def beat() -> None:
            while True:
                await etcd.heartbeat("users-10.0.0.1-2")
                await asyncio.sleep(0.25)

        beating = asyncio.create_task(beat())
        snap = await asyncio.wait_for(anext(watch), BOUND)  # etcd expired port 1's lease
        assert ports(snap) == [2]
        beating.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beating
        assert ports(await asyncio.wait_for(anext(watch), BOUND)) == []  # and then port 2's
    finally:
        await watch.aclose()
    with pytest.raises(UnknownInstance):
        await etcd.heartbeat("users-10.0.0.1-2")


async def test_heartbeat_without_ttl_is_accepted_and_unknown_ids_refused(etcd: EtcdRegistry) -> None:
    await etcd.register(inst(port=1))
    await etcd.heartbeat("users-10.0.0.1-1")
    with pytest.raises(UnknownInstance):
        await etcd.heartbeat("nobody")


async def test_watch_yields_each_change_in_order(etcd: EtcdRegistry) -> None:
    watch = etcd.watch("users")
    everything = etcd.watch()
    try:
        first = await anext(watch)
        assert first.instances == () and (await anext(everything)).instances == ()
        steps = [
            (etcd.register(inst(port=1)), [1], 1),
            (etcd.register(inst("orders", port=5)), None, 2),
            (etcd.register(inst(port=2)), [1, 2], 3),
            (etcd.deregister("users-10.0.0.1-1"), [2], 2),
        ]
        revisions = [first.revision]
        for change, users, total in steps:
            await change
            if users is not None:
                snap = await asyncio.wait_for(anext(watch), BOUND)
                assert ports(snap) == users
                revisions.append(snap.revision)
            assert len((await asyncio.wait_for(anext(everything), BOUND)).instances) == total
        assert revisions == sorted(set(revisions))
    finally:
        await watch.aclose()
        await everything.aclose()


async def test_watch_resyncs_with_a_full_read_when_its_revision_was_compacted(etcd: EtcdRegistry) -> None:
    await etcd.register(inst(port=1))
    watch = etcd.watch("users")
    try:
        assert ports(await anext(watch)) == [1]  # listed at revision R; the etcd watch opens on the next read
        await etcd.deregister("users-10.0.0.1-1")
        await etcd.register(inst(port=2))
        await etcd.register(inst(port=3))
        await etcd.client.call("/v3/kv/compaction", {"revision": str(etcd.revision), "physical": True})
        snap = await asyncio.wait_for(anext(watch), BOUND)  # R+1 is gone: the range is read afresh
        assert ports(snap) == [2, 3] and snap.revision >= etcd.revision - 0
        await etcd.register(inst(port=4))
        assert ports(await asyncio.wait_for(anext(watch), BOUND)) == [2, 3, 4]  # and followed on
    finally:
        await watch.aclose()


async def test_reaper_removes_instances_unhealthy_past_their_limit(
    etcd: EtcdRegistry, clock: FakeClock
) -> None:
    await etcd.register(inst(port=1))
    await etcd.register(inst(port=2, check=HealthCheck(deregister_critical_after=5.0)))
    await etcd.register(inst(port=3))
    for port in (1, 2):
        await etcd.set_state(f"users-10.0.0.1-{port}", ServiceState.UNHEALTHY)
    clock.advance(10.0)
    assert await etcd.expire_now() == 1  # port 2: its check says 5 s
    clock.advance(55.0)
    assert await etcd.expire_now() == 1  # port 1: the registry's 60 s
    assert ports(await etcd.instances("users")) == [3]
    assert await etcd.get("users-10.0.0.1-1") is None


async def test_settings_are_shared_json(etcd: EtcdRegistry) -> None:
    assert await etcd.get_setting("lb", "p2c") == "p2c"
    await etcd.put_setting("lb", {"strategy": "round_robin"})
    assert await etcd.get_setting("lb") == {"strategy": "round_robin"}
    with pytest.raises(ValueError, match=r"^key:"):
        await etcd.put_setting("", 1)


async def test_two_control_planes_see_each_others_registrations(single: EtcdCluster, prefix: str) -> None:
    a = EtcdRegistry(single.endpoints, prefix=prefix, reap_interval=None)
    b = CachedRegistry(EtcdRegistry(single.url, prefix=prefix, reap_interval=None), owns_registry=True)
    await a.start()
    await b.start()
    try:
        assert (await b.discover("users")).instances == ()  # b now follows users by watch
        await a.register(inst(port=1))
        for _ in range(200):  # the watch pushes it; bounded wait, no speed assertion
            if ports(await b.discover("users")) == [1]:
                break
            await asyncio.sleep(0.01)
        assert ports(await b.discover("users")) == [1]
        await b.deregister("users-10.0.0.1-1")
        assert (await a.instances("users")).instances == ()
    finally:
        await a.close()
        await b.close()


async def test_closed_registry_refuses_calls(single: EtcdCluster, prefix: str) -> None:
    registry = EtcdRegistry(single.endpoints, prefix=prefix)
    from meshkit.errors import RegistryUnavailable

    with pytest.raises(RegistryUnavailable, match="not running"):
        await registry.instances("users")
    await registry.start()
    await registry.close()
    with pytest.raises(RegistryUnavailable, match="not running"):
        await registry.register(inst(port=1))
