"""The registry loses its majority under load (issue item 6): clients keep serving, then resync.

A three-member etcd cluster (real etcd processes, tests/registry/etcd/cluster.py) holds two
instances; a `MeshClient` resolves them through a `CachedRegistry`. Under 100 GET/s open
loop, two of the three members are SIGKILLed (no quorum: etcd refuses reads and writes),
then restarted. Asserted: every call succeeds throughout (discovery is served from the
cached snapshot, marked stale); the cache notices the outage and reconnects; an instance
registered after the restore gets traffic (the cache resynced; figure: seconds from the
quorum's return to the newcomer's first request).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from meshkit.client import MeshClient
from meshkit.errors import RegistryUnavailable
from meshkit.registry import CachedRegistry
from meshkit.registry.etcd import EtcdRegistry
from meshkit.types import ServiceInstance, default_instance_id
from tests.chaos.support import AttemptLog, at, open_loop, report
from tests.conftest import StartUpstream
from tests.registry.etcd.cluster import ETCD, EtcdCluster

pytestmark = pytest.mark.skipif(not Path(ETCD).exists(), reason="etcd-server is not installed")

RATE = 100.0
DURATION = 14.0
LOSE_AT, RESTORE_AT = 3.0, 8.0  # seconds into the load
BOUND = 15.0  # seconds: a guard against hanging, never a speed assertion


def instance(host: str, port: int) -> ServiceInstance:
    return ServiceInstance(default_instance_id("orders", host, port), "orders", host, port)


async def test_clients_keep_serving_through_a_lost_etcd_majority_then_resync(
    upstreams: StartUpstream, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    cluster = EtcdCluster(tmp_path / "etcd", size=3)
    await asyncio.to_thread(cluster.start)
    try:
        await run_outage(cluster, upstreams, record_property)
    finally:
        cluster.close()


async def run_outage(
    cluster: EtcdCluster, upstreams: StartUpstream, record_property: Callable[[str, object], None]
) -> None:
    ups = [await upstreams(f"orders{i}") for i in range(3)]
    cache = CachedRegistry(
        EtcdRegistry(cluster.endpoints, prefix="/chaos/", timeout=1.0, reap_interval=None),
        owns_registry=True,
        base_backoff=0.05,
        max_backoff=1.0,
        rng=random.Random(9),
    )
    client = MeshClient(cache, rng=random.Random(9))
    attempts = AttemptLog().install(client)
    newcomer = instance(ups[2].host, ups[2].port)
    marks: dict[str, float] = {}
    seen: dict[str, object] = {}

    async def call(i: int) -> str:
        response = await client.request("orders", "GET", f"/o/{i}")
        if response.status != 200:
            raise RuntimeError(f"status {response.status}")
        assert response.instance is not None
        return response.instance.service_id

    async def faults(start: float) -> None:
        await at(start, LOSE_AT)
        for member in cluster.members[:2]:
            await asyncio.to_thread(member.kill)
        marks["lost"] = time.monotonic()
        await at(start, RESTORE_AT - 1.0)
        seen["connected_during"] = cache.connected
        seen["stale_during"] = (await cache.discover("orders")).stale
        with pytest.raises(RegistryUnavailable):
            await asyncio.wait_for(cache.register(newcomer), BOUND)  # writes are refused, not lost
        await at(start, RESTORE_AT)
        for member in cluster.members[:2]:
            cluster.restart(member)
        await asyncio.to_thread(cluster.wait_healthy)
        marks["restored"] = time.monotonic()
        for _ in range(100):  # bounded: etcd may take a moment to accept writes again
            try:
                await asyncio.wait_for(cache.register(newcomer), BOUND)
                break
            except RegistryUnavailable:
                await asyncio.sleep(0.1)
        marks["registered"] = time.monotonic()

    await cache.start()
    try:
        for up in ups[:2]:
            await cache.register(instance(up.host, up.port))
        assert len(await cache.resolve("orders")) == 2
        fault_task = asyncio.create_task(faults(asyncio.get_running_loop().time()))
        load = await open_loop(call, rate=RATE, duration=DURATION)
        await fault_task
        # When etcd took long to come back, the newcomer joined near the end of the load: give it a
        # bounded number of further calls (through the same client, to the same resynced cache).
        for i in range(60):
            if attempts.times.get(newcomer.service_id):
                break
            await call(10_000 + i)
            await asyncio.sleep(0.05)
        connected_after = cache.connected
        stale_after = (await cache.discover("orders")).stale
    finally:
        await client.aclose()
        await cache.close()

    reached = attempts.times.get(newcomer.service_id, [])
    resync = reached[0] - marks["restored"] if reached else float("inf")
    outage = load.between(LOSE_AT, RESTORE_AT)
    report(
        "registry_majority_lost",
        {
            "rate_rps": RATE,
            "duration_s": DURATION,
            "outage_s": round(marks["restored"] - marks["lost"], 2),
            "sent": load.sent,
            "success_ratio": round(load.success_ratio(), 5),
            "calls_during_outage": len(outage),
            "success_during_outage": round(load.success_ratio(LOSE_AT, RESTORE_AT), 5),
            "stale_during_outage": seen["stale_during"],
            "newcomer_first_request_after_restore_s": round(resync, 3),
            "newcomer_requests": len(reached),
            "errors": load.errors(),
        },
        record_property,
    )
    assert load.success_ratio() == 1.0, load.errors()
    assert seen["connected_during"] is False and seen["stale_during"] is True
    assert connected_after and not stale_after
    assert reached, "the instance registered after the restore got traffic: the cache resynced"
