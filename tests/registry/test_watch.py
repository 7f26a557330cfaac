"""watch(): the current snapshot first, then one per change, revisions increasing, coalesced."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from meshkit.errors import RegistryUnavailable
from meshkit.registry import EmbeddedRegistry, Snapshot
from tests.registry.conftest import inst

WAIT = 5.0  # a safety cap on waiting for a wake-up; never an assertion about speed


async def next_snap(watch: AsyncIterator[Snapshot]) -> Snapshot:
    return await asyncio.wait_for(anext(watch), WAIT)


async def test_first_yield_is_current_then_each_change(registry: EmbeddedRegistry) -> None:
    await registry.register(inst(port=1))
    watch = registry.watch("users")
    first = await next_snap(watch)
    assert [i.port for i in first.instances] == [1] and first.revision == 1
    await registry.register(inst(port=2))
    second = await next_snap(watch)
    assert [i.port for i in second.instances] == [1, 2] and second.revision == 2
    await registry.deregister("users-10.0.0.1-1")
    third = await next_snap(watch)
    assert [i.port for i in third.instances] == [2] and third.revision == 3
    await watch.aclose()


async def test_changes_to_other_services_do_not_wake(registry: EmbeddedRegistry) -> None:
    watch = registry.watch("users")
    assert (await next_snap(watch)).revision == 0
    await registry.register(inst("orders"))
    await registry.register(inst("users"))
    snap = await next_snap(watch)
    assert snap.service == "users" and snap.revision == 2  # orders' change (1) was never yielded
    await watch.aclose()


async def test_slow_watcher_coalesces_to_latest(registry: EmbeddedRegistry) -> None:
    watch = registry.watch("users")
    await next_snap(watch)
    for port in range(1, 51):
        await registry.register(inst(port=port))
    snap = await next_snap(watch)
    assert snap.revision == 50 and len(snap.instances) == 50  # one snapshot, not fifty


async def test_watchers_see_increasing_revisions_under_concurrent_writes(registry: EmbeddedRegistry) -> None:
    seen: list[list[int]] = [[] for _ in range(5)]

    async def follow(out: list[int]) -> None:
        async for snap in registry.watch("users"):
            out.append(snap.revision)
            if len(snap.instances) == 200:
                return

    followers = [asyncio.create_task(follow(out)) for out in seen]
    await asyncio.sleep(0)
    await asyncio.gather(*(registry.register(inst(port=p)) for p in range(1, 201)))
    await asyncio.wait_for(asyncio.gather(*followers), WAIT)
    for revisions in seen:
        assert revisions == sorted(set(revisions))  # strictly increasing
        assert revisions[-1] == 200


async def test_watch_all_services(registry: EmbeddedRegistry) -> None:
    watch = registry.watch()
    assert (await next_snap(watch)).instances == ()
    await registry.register(inst("users"))
    await registry.register(inst("orders"))
    snap = await next_snap(watch)
    assert snap.service == "" and snap.revision >= 1
    while snap.revision < 2:
        snap = await next_snap(watch)
    assert {i.service_name for i in snap.instances} == {"users", "orders"}


async def test_close_ends_watch_with_unavailable(registry: EmbeddedRegistry) -> None:
    watch = registry.watch("users")
    await next_snap(watch)
    pending = asyncio.ensure_future(next_snap(watch))
    await asyncio.sleep(0)
    await registry.close()
    with pytest.raises(RegistryUnavailable):
        await pending


async def test_watch_validates_the_name(registry: EmbeddedRegistry) -> None:
    with pytest.raises(ValueError, match=r"^service_name:"):
        await anext(registry.watch("Not_Valid"))
