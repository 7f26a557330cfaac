"""A three-member etcd cluster losing members: nothing acknowledged is lost, and the cache bridges the gap."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator

import pytest

from meshkit.errors import RegistryUnavailable
from meshkit.registry import CachedRegistry
from meshkit.registry.etcd import EtcdRegistry
from tests.registry.conftest import inst
from tests.registry.etcd.cluster import EtcdCluster

BOUND = 15.0  # seconds: a guard against hanging, never a speed assertion


@pytest.fixture(scope="module")
def trio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    cluster = EtcdCluster(tmp_path_factory.mktemp("etcd3"), size=3)
    try:
        yield cluster.start()
    finally:
        cluster.close()


@pytest.fixture
async def cluster(trio: EtcdCluster) -> AsyncIterator[EtcdCluster]:
    """The shared cluster, whole again after each test (members a test killed are restarted)."""
    yield trio
    for member in trio.members:
        trio.restart(member)
    await asyncio.to_thread(trio.wait_healthy)


async def registry_on(cluster: EtcdCluster, prefix: str, seconds: float = 2.0) -> EtcdRegistry:
    registry = EtcdRegistry(cluster.endpoints, prefix=prefix, timeout=seconds, reap_interval=None)
    await registry.start()
    return registry


async def test_killing_one_member_under_load_loses_no_acknowledged_registration(
    cluster: EtcdCluster, prefix: str
) -> None:
    registry = await registry_on(cluster, prefix, seconds=5.0)
    acked: list[int] = []
    refused: list[BaseException] = []
    ports = itertools.count(1)
    stop, progress = asyncio.Event(), asyncio.Event()

    async def acked_at_least(n: int) -> None:
        while len(acked) < n:
            progress.clear()
            await progress.wait()
            assert len(refused) < 50, refused[:3]

    async def register_forever() -> None:
        while not stop.is_set():
            port = next(ports)
            try:
                await registry.register(inst(port=port))
            except RegistryUnavailable as e:
                refused.append(e)
                continue
            acked.append(port)
            progress.set()

    workers = [asyncio.create_task(register_forever()) for _ in range(16)]
    try:
        await asyncio.wait_for(acked_at_least(100), BOUND)
        victim = cluster.leader()
        victim.kill()  # the leader: a new one is elected while requests are in flight
        before_kill = len(acked)
        await asyncio.wait_for(acked_at_least(before_kill + 200), BOUND)
        snap = await asyncio.wait_for(registry.instances("users"), BOUND)  # discovery keeps working
        assert snap.instances
    finally:
        stop.set()
        await asyncio.gather(*workers)
    registered = {i.port for i in (await registry.instances("users")).instances}
    assert set(acked) <= registered, sorted(set(acked) - registered)[:10]
    await registry.close()


async def test_a_watch_resumes_on_another_member_when_its_member_dies(
    cluster: EtcdCluster, prefix: str
) -> None:
    watcher = await registry_on(cluster, prefix)
    writer = await registry_on(cluster, prefix)
    watch = watcher.watch("users")
    try:
        assert (await anext(watch)).instances == ()
        await writer.register(inst(port=1))
        assert [i.port for i in (await asyncio.wait_for(anext(watch), BOUND)).instances] == [1]
        cluster.member(watcher.client.current).kill()  # the member serving the watch
        await writer.register(inst(port=2))
        await writer.register(inst(port=3))
        seen: list[int] = []
        while seen != [1, 2, 3]:  # resumed from its revision: the changes after the kill arrive
            seen = sorted(i.port for i in (await asyncio.wait_for(anext(watch), BOUND)).instances)
    finally:
        await watch.aclose()
        await watcher.close()
        await writer.close()


async def test_losing_the_majority_refuses_writes_serves_stale_and_recovers(
    cluster: EtcdCluster, prefix: str
) -> None:
    cache = CachedRegistry(
        EtcdRegistry(cluster.endpoints, prefix=prefix, timeout=1.5, reap_interval=None),
        owns_registry=True,
        base_backoff=0.05,
        max_backoff=0.5,
    )
    await cache.start()
    try:
        await cache.register(inst(port=1))
        assert [i.port for i in (await cache.discover("users")).instances] == [1]

        for member in cluster.members[:2]:
            member.kill()
        with pytest.raises(RegistryUnavailable, match=r"^etcd at 127\.0\.0\.1:"):
            await asyncio.wait_for(cache.register(inst(port=2)), BOUND)  # refused within the timeout
        stale = await cache.discover("users", use_cache=False)  # etcd tried, then the cache answers
        assert stale.stale and [i.port for i in stale.instances] == [1]
        assert not cache.connected

        for member in cluster.members[:2]:
            cluster.restart(member)
        await asyncio.to_thread(cluster.wait_healthy)
        await asyncio.wait_for(cache.register(inst(port=2)), BOUND)  # same objects, no restart
        for _ in range(500):  # the follower resyncs; bounded wait
            snap = await cache.discover("users")
            if not snap.stale and [i.port for i in snap.instances] == [1, 2]:
                break
            await asyncio.sleep(0.02)
        assert not snap.stale and sorted(i.port for i in snap.instances) == [1, 2]
        assert cache.connected
    finally:
        await cache.close()
