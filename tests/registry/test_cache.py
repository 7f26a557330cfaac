"""CachedRegistry: answers from the last snapshot when the registry is down, and resyncs."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from meshkit.clock import FakeClock
from meshkit.discovery import Resolver
from meshkit.errors import RegistryUnavailable
from meshkit.registry import CachedRegistry, EmbeddedRegistry, Snapshot, UnknownInstance
from meshkit.types import ServiceState
from tests.registry.conftest import inst


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


@pytest.fixture(params=["memory", "sqlite"])
async def cache(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[CachedRegistry]:
    registry = EmbeddedRegistry(tmp_path if request.param == "sqlite" else None, clock=clock)
    cached = CachedRegistry(registry, clock=clock, rng=random.Random(1), owns_registry=True)
    await cached.start()
    yield cached
    await cached.close()


async def test_registry_stopped_discovery_answers_stale_from_cache(
    cache: CachedRegistry, clock: FakeClock
) -> None:
    await cache.register(inst(port=1))
    fresh = await cache.discover("users")
    assert [i.port for i in fresh.instances] == [1] and not fresh.stale and fresh.age == 0.0

    await cache.registry.close()  # the registry stops
    await settle()
    clock.advance(7.0)
    snap = await cache.discover("users")
    assert snap.stale and snap.age == pytest.approx(7.0)
    assert [i.port for i in snap.instances] == [1]
    assert [i.port for i in await cache.resolve("users")] == [1]
    assert not cache.connected
    assert await cache.services() == {"users": 1}  # from cache too
    assert (await cache.discover("users", use_cache=False)).stale  # the registry is tried, then the cache
    with pytest.raises(RegistryUnavailable):
        await cache.register(inst(port=2))  # writes are never faked
    with pytest.raises(RegistryUnavailable):
        await cache.discover("orders")  # nothing cached: no answer to give


async def test_resyncs_when_the_registry_returns(cache: CachedRegistry, clock: FakeClock) -> None:
    await cache.register(inst(port=1))
    await cache.discover("users")
    await cache.registry.close()
    await settle()
    await clock.run_for(40.0, step=0.5)  # the follower retries, backing off, and keeps failing
    assert (await cache.discover("users")).stale

    await cache.registry.start()
    await cache.registry.register(inst(port=2))  # a change the cache has not seen
    await clock.run_for(31.0, step=0.5)  # one backoff (<= max_backoff) later it is back
    snap = await cache.discover("users")
    assert not snap.stale and snap.age == 0.0
    assert sorted(i.port for i in snap.instances) == [1, 2]
    assert cache.connected


async def test_watch_keeps_the_cache_current(cache: CachedRegistry) -> None:
    await cache.discover("users")
    await cache.registry.register(inst(port=5))  # straight to the registry, not through the cache
    await settle()
    assert [i.port for i in await cache.resolve("users")] == [5]


class AlwaysDownAfterFirstRead:
    """Answers one read, then every watch fails; records when each watch was attempted."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.attempts: list[float] = []

    async def instances(self, service_name: str) -> Snapshot:
        return Snapshot(service_name, (), 1)

    async def watch(self, service_name: str | None = None) -> AsyncIterator[Snapshot]:
        self.attempts.append(self.clock.monotonic())
        raise RegistryUnavailable("connection refused")
        yield  # pragma: no cover  (makes this an async generator)


async def test_retries_back_off_exponentially_with_full_jitter(clock: FakeClock) -> None:
    backend = AlwaysDownAfterFirstRead(clock)
    cache = CachedRegistry(backend, clock=clock, rng=random.Random(7), base_backoff=0.1, max_backoff=30.0)  # type: ignore[arg-type]
    await cache.discover("users")
    await clock.run_for(80.0)
    gaps = [b - a for a, b in zip(backend.attempts, backend.attempts[1:], strict=False)][:11]
    expected_rng = random.Random(7)
    expected = [expected_rng.uniform(0.0, min(30.0, 0.1 * 2.0**n)) for n in range(len(gaps))]
    assert len(gaps) == 11
    assert gaps == pytest.approx(expected, abs=0.011)  # the clock moves in 0.01 s steps
    assert max(gaps) <= 30.0
    assert (await cache.discover("users")).stale
    for task in [e.task for e in cache._entries.values()]:
        assert task is not None
        task.cancel()


async def test_polling_mode_reports_age_and_refreshes(tmp_path: Path, clock: FakeClock) -> None:
    registry = EmbeddedRegistry(None, clock=clock)
    cache = CachedRegistry(
        registry, clock=clock, rng=random.Random(1), use_watch=False, refresh_interval=5.0, owns_registry=True
    )
    await cache.start()
    await cache.discover("users")
    await registry.register(inst(port=1))
    clock.advance(3.0)
    snap = await cache.discover("users")
    assert snap.instances == () and not snap.stale and snap.age == pytest.approx(3.0)
    await clock.run_for(2.5)
    snap = await cache.discover("users")
    assert [i.port for i in snap.instances] == [1] and snap.age < 1.0
    await cache.close()


async def test_is_a_resolver_and_caps_followed_services(clock: FakeClock) -> None:
    cache = CachedRegistry(EmbeddedRegistry(clock=clock), clock=clock, max_services=3, owns_registry=True)
    await cache.start()
    assert isinstance(cache, Resolver)
    for name in ("a", "b", "c", "d"):
        await cache.discover(name)
    assert list(cache._entries) == ["b", "c", "d"]
    await cache.close()


def test_constructor_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match=r"^max_backoff:"):
        CachedRegistry(EmbeddedRegistry(), max_backoff=0)
    with pytest.raises(ValueError, match=r"^max_services:"):
        CachedRegistry(EmbeddedRegistry(), max_services=0)


async def test_does_not_own_the_registry_unless_told(clock: FakeClock) -> None:
    registry = EmbeddedRegistry(clock=clock)
    await registry.start()
    cache = CachedRegistry(registry, clock=clock)
    await cache.start()
    await cache.discover("users")
    await cache.close()
    assert await registry.services() == {}  # still running: closing the cache left it alone
    await registry.close()


async def test_writes_pass_through_and_reads_see_them(cache: CachedRegistry) -> None:
    await cache.discover("users")
    record = await cache.register(inst(port=1))
    await cache.heartbeat(record.id)
    updated = await cache.set_state(record.id, ServiceState.HEALTHY)
    assert updated is not None
    snap = await cache.discover("users")
    assert [i.state for i in snap.healthy] == [ServiceState.HEALTHY]  # read your writes, no wait
    assert await cache.get(record.id) == record
    assert await cache.all_instances() == [record]
    assert await cache.deregister(record.id) is True
    assert (await cache.instances("users")).instances == ()
    assert await cache.deregister(record.id) is False
    with pytest.raises(UnknownInstance):
        await cache.heartbeat(record.id)
    await cache.registry.close()
    assert await cache.all_instances() == []  # the cache's view while the registry is down


async def test_known_answers_from_memory_only(cache: CachedRegistry) -> None:
    assert cache.known("users") is None  # never asked for: the data path must resolve() it
    await cache.register(inst(port=1))
    assert cache.known("users") is None
    assert [i.port for i in await cache.resolve("users")] == [1]
    known = cache.known("users")
    assert known is not None and [i.port for i in known] == [1]
    await cache.register(inst(port=2))
    await settle()
    assert sorted(i.port for i in cache.known("users") or ()) == [1, 2]  # kept current by the watch
