"""RemoteRegistry against the real control plane (a subprocess): the Registry contract over REST."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from meshkit.errors import RegistryUnavailable
from meshkit.registry.base import Registry, UnknownInstance
from meshkit.registry.cache import CachedRegistry
from meshkit.registry.remote import RemoteRegistry, split_address
from meshkit.remote import ControlPlaneClient, ControlPlaneError
from meshkit.types import HealthCheck, ServiceInstance, ServiceState
from tests.support.plane import PlaneProcess, free_port, start_plane


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlaneProcess]:
    proc = start_plane(tmp_path_factory.mktemp("plane") / "data")
    yield proc
    proc.stop()


@pytest.fixture
async def remote(plane: PlaneProcess) -> AsyncIterator[RemoteRegistry]:
    registry = RemoteRegistry(
        ControlPlaneClient(plane.url, plane.token), poll_interval=0.05, owns_client=True
    )
    await registry.start()
    yield registry
    await registry.close()


def inst(name: str, port: int, **kw: object) -> ServiceInstance:
    return ServiceInstance(f"{name}-127.0.0.1-{port}", name, "127.0.0.1", port, **kw)  # type: ignore[arg-type]


async def test_is_a_registry(remote: RemoteRegistry) -> None:
    assert isinstance(remote, Registry)


async def test_register_then_read_every_way(remote: RemoteRegistry) -> None:
    check = HealthCheck(kind="ttl", ttl=30.0)
    record = await remote.register(
        inst("reads", 7001, tags=["a"], metadata={"k": "v"}, weight=5, zone="z1", version="1.2", check=check)
    )
    assert record.service_id == "reads-127.0.0.1-7001"
    try:
        snap = await remote.instances("reads")
        [found] = snap.instances
        assert (found.address, found.port, found.tags) == ("127.0.0.1", 7001, ["a"])
        assert found.metadata["k"] == "v"  # the plane adds its owner stamp beside it
        assert (found.weight, found.zone, found.version) == (5, "z1", "1.2")
        assert snap.service == "reads" and not snap.stale
        assert (await remote.services())["reads"] == 1
        assert record.service_id in [i.service_id for i in await remote.all_instances()]
        got = await remote.get(record.service_id)
        assert got is not None and got.check is not None
        assert (got.check.kind, got.check.ttl) == ("ttl", 30.0)
        assert await remote.get("reads-127.0.0.1-1") is None
        await remote.heartbeat(record.service_id)
    finally:
        assert await remote.deregister(record.service_id) is True
    assert (await remote.instances("reads")).instances == ()
    assert await remote.deregister(record.service_id) is False
    with pytest.raises(UnknownInstance):
        await remote.heartbeat(record.service_id)


async def test_refusals_are_not_unavailability(remote: RemoteRegistry) -> None:
    def refuse(address: str) -> None:
        raise ValueError(f"address: {address} refused")

    with pytest.raises(ValueError, match="refused"):
        await remote.register(inst("policy", 7002), address_policy=refuse)
    assert (await remote.instances("policy")).instances == ()  # nothing was sent
    with pytest.raises(NotImplementedError, match=r"^set_state"):
        await remote.set_state("x", ServiceState.HEALTHY)
    with pytest.raises(ValueError, match=r"^service_name"):
        await remote.instances("Not Valid")


async def test_watch_yields_the_current_state_then_only_changes(remote: RemoteRegistry) -> None:
    watch = remote.watch("watched")
    first = await anext(watch)
    assert first.instances == ()
    record = await remote.register(inst("watched", 7003))
    try:
        second = await asyncio.wait_for(anext(watch), 5)
        assert [i.service_id for i in second.instances] == [record.service_id]
        assert second.revision > first.revision
        with pytest.raises(TimeoutError):  # several polls, nothing changed: nothing yielded
            await asyncio.wait_for(anext(watch), 0.3)
    finally:
        await remote.deregister(record.service_id)
        await watch.aclose()


async def test_watch_of_everything(remote: RemoteRegistry) -> None:
    record = await remote.register(inst("everything", 7004))
    try:
        watch = remote.watch()
        snap = await anext(watch)
        await watch.aclose()
        assert snap.service == ""
        assert record.service_id in [i.service_id for i in snap.instances]
    finally:
        await remote.deregister(record.service_id)


async def test_unauthorised_is_a_control_plane_error(plane: PlaneProcess) -> None:
    registry = RemoteRegistry(ControlPlaneClient(plane.url, "wrong-token-0123456789"), owns_client=True)
    try:
        with pytest.raises(ControlPlaneError) as err:
            await registry.register(inst("nope", 7005))
        assert err.value.status == 401
    finally:
        await registry.close()


async def test_down_plane_is_registry_unavailable_and_cache_serves_stale(tmp_path: Path) -> None:
    own = start_plane(tmp_path / "data")
    remote = RemoteRegistry(
        ControlPlaneClient(own.url, own.token, timeout=2), poll_interval=0.05, owns_client=True
    )
    cache = CachedRegistry(remote, owns_registry=True, base_backoff=0.05, max_backoff=0.2)
    try:
        await cache.register(inst("cached", 7006))
        assert [i.port for i in await cache.resolve("cached")] == [7006]
        own.stop()
        with pytest.raises(RegistryUnavailable):
            await remote.instances("cached")
        with pytest.raises(RegistryUnavailable):
            await remote.heartbeat("cached-127.0.0.1-7006")
        for _ in range(100):  # the follower notices within a few polls
            if not cache.connected:
                break
            await asyncio.sleep(0.05)
        snap = await cache.discover("cached")
        assert snap.stale and [i.port for i in snap.instances] == [7006]
    finally:
        own.stop()
        await cache.close()


def test_split_address() -> None:
    assert split_address("10.0.0.1:80") == ("10.0.0.1", 80)
    assert split_address("[::1]:8080") == ("::1", 8080)
    for bad in ("nohost", ":80", "host:", "host:x"):
        with pytest.raises(ValueError, match=r"^address"):
            split_address(bad)


def test_poll_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match=r"^poll_interval"):
        RemoteRegistry(ControlPlaneClient(f"http://127.0.0.1:{free_port()}"), poll_interval=0)
