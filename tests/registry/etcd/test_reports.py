"""EtcdRegistry.report_ttl / ttl_reports against a real etcd: round trip, leases, bad input, broken watches."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path

import pytest

from meshkit.errors import RegistryUnavailable
from meshkit.registry import UnknownInstance
from meshkit.registry.etcd import EtcdRegistry
from tests.registry.conftest import inst
from tests.registry.etcd.cluster import EtcdCluster

BOUND = 10.0  # seconds: a guard against hanging, never a speed assertion
Reports = AsyncGenerator[tuple[str, str, str], None]


async def following(etcd: EtcdRegistry) -> Reports:
    """ttl_reports from the revision etcd is at now (a read fixes it), so no test races its start."""
    await etcd.get("anything")
    return etcd.ttl_reports(after=etcd.revision)


async def next_report(reports: Reports) -> tuple[str, str, str]:
    return await asyncio.wait_for(anext(reports), BOUND)


async def stored(etcd: EtcdRegistry, service_id: str) -> bool:
    kvs, _ = await etcd.client.range(etcd.keys.report(service_id))
    return bool(kvs)


async def test_reports_round_trip_in_order_and_only_those_after_the_start(etcd: EtcdRegistry) -> None:
    await etcd.register(inst(port=1, ttl=30))
    await etcd.register(inst(port=2))
    await etcd.report_ttl("users-10.0.0.1-1", "fail", "before the start")
    reports = await following(etcd)
    try:
        await etcd.report_ttl("users-10.0.0.1-1", "pass")
        await etcd.report_ttl("users-10.0.0.1-2", "warn", "disk 91%")
        await etcd.report_ttl("users-10.0.0.1-1", "fail", "db down")
        assert [await next_report(reports) for _ in range(3)] == [
            ("users-10.0.0.1-1", "pass", ""),
            ("users-10.0.0.1-2", "warn", "disk 91%"),
            ("users-10.0.0.1-1", "fail", "db down"),
        ]
    finally:
        await reports.aclose()


async def test_a_report_goes_with_its_instance_and_deletions_are_not_reports(etcd: EtcdRegistry) -> None:
    await etcd.register(inst(port=1, ttl=1))  # its lease expires ~1 s after the last heartbeat
    await etcd.register(inst(port=2))  # no lease: deregistration removes the report
    await etcd.register(inst(port=3))
    reports = await following(etcd)
    try:
        for port in (1, 2):
            await etcd.report_ttl(f"users-10.0.0.1-{port}", "pass")
        assert await stored(etcd, "users-10.0.0.1-1") and await stored(etcd, "users-10.0.0.1-2")
        assert await etcd.deregister("users-10.0.0.1-2")
        assert not await stored(etcd, "users-10.0.0.1-2")
        for _ in range(int(BOUND / 0.05)):  # etcd expires the lease: instance and report go together
            if not await stored(etcd, "users-10.0.0.1-1"):
                break
            await asyncio.sleep(0.05)
        assert not await stored(etcd, "users-10.0.0.1-1") and await etcd.get("users-10.0.0.1-1") is None
        await etcd.report_ttl("users-10.0.0.1-3", "warn")
        seen = [await next_report(reports) for _ in range(3)]
        assert seen == [
            ("users-10.0.0.1-1", "pass", ""),
            ("users-10.0.0.1-2", "pass", ""),
            ("users-10.0.0.1-3", "warn", ""),
        ]  # the two deletions in between yielded nothing
    finally:
        await reports.aclose()
    with pytest.raises(UnknownInstance):
        await etcd.report_ttl("users-10.0.0.1-1", "pass")


async def test_unknown_instances_and_bad_input_are_refused_before_anything_is_written(
    etcd: EtcdRegistry,
) -> None:
    with pytest.raises(UnknownInstance):
        await etcd.report_ttl("nobody", "pass")
    await etcd.register(inst(port=1))
    with pytest.raises(ValueError, match=r"^status: must be one of pass, warn, fail, got 'ok'"):
        await etcd.report_ttl("users-10.0.0.1-1", "ok")
    with pytest.raises(ValueError, match=r"^note: must be a string of at most 1024 characters"):
        await etcd.report_ttl("users-10.0.0.1-1", "pass", "x" * 1025)
    with pytest.raises(ValueError, match=r"^after:"):
        await anext(etcd.ttl_reports(after=-1))
    assert not await stored(etcd, "users-10.0.0.1-1")


async def test_compacted_history_loses_only_the_reports_it_took(etcd: EtcdRegistry) -> None:
    await etcd.register(inst(port=1))
    reports = await following(etcd)
    try:
        await etcd.report_ttl("users-10.0.0.1-1", "fail", "compacted away")
        await etcd.report_ttl("users-10.0.0.1-1", "pass", "at the compaction revision")
        await etcd.client.call("/v3/kv/compaction", {"revision": str(etcd.revision), "physical": True})
        assert await next_report(reports) == ("users-10.0.0.1-1", "pass", "at the compaction revision")
        await etcd.report_ttl("users-10.0.0.1-1", "warn", "after")
        assert await next_report(reports) == ("users-10.0.0.1-1", "warn", "after")
    finally:
        await reports.aclose()


@pytest.fixture
def own(tmp_path: Path) -> Iterator[EtcdCluster]:
    """A member of this test's own, to kill and restart."""
    cluster = EtcdCluster(tmp_path / "etcd", size=1)
    try:
        yield cluster.start()
    finally:
        cluster.close()


async def test_a_broken_watch_resumes_from_its_last_report_and_fails_when_no_member_serves(
    own: EtcdCluster, prefix: str
) -> None:
    follower = EtcdRegistry(own.endpoints, prefix=prefix, timeout=2.0, reap_interval=None)
    await follower.start()
    reports = await following(follower)
    try:
        await follower.register(inst(port=1))
        await follower.report_ttl("users-10.0.0.1-1", "pass", "one")
        assert await next_report(reports) == ("users-10.0.0.1-1", "pass", "one")  # the watch is open

        member = own.members[0]
        member.kill()  # the watch's stream dies with it
        own.restart(member)
        await asyncio.to_thread(own.wait_healthy)
        writer = EtcdRegistry(own.endpoints, prefix=prefix, timeout=2.0, reap_interval=None)
        async with writer:
            await writer.report_ttl("users-10.0.0.1-1", "warn", "two")  # while no watch is open
            await writer.report_ttl("users-10.0.0.1-1", "pass", "three")
        # Resumed from "one"'s revision: "two" and "three" replayed from history, "one" not repeated.
        assert await next_report(reports) == ("users-10.0.0.1-1", "warn", "two")
        assert await next_report(reports) == ("users-10.0.0.1-1", "pass", "three")

        member.kill()
        with pytest.raises(RegistryUnavailable):
            await next_report(reports)
    finally:
        with contextlib.suppress(RegistryUnavailable):
            await reports.aclose()
        await follower.close()


async def test_a_closed_registry_refuses_to_follow(single: EtcdCluster, prefix: str) -> None:
    registry = EtcdRegistry(single.endpoints, prefix=prefix, reap_interval=None)
    with pytest.raises(RegistryUnavailable, match="not running"):
        await anext(registry.ttl_reports())
    with pytest.raises(RegistryUnavailable, match="not running"):
        await registry.report_ttl("x", "pass")
