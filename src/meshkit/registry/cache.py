"""CachedRegistry: discovery that keeps answering when the registry does not.

The seed's "graceful degradation": the client keeps the last snapshot of every service
it has asked about and serves reads from memory (a dict lookup: `resolve` is the data
path). Each cached service is followed in the background, by `watch` (pushed within
milliseconds) or by polling every `refresh_interval`. When the registry fails, reads go
on from the last snapshot, marked `stale` with its `age`, and the follower retries with
exponential backoff and full jitter (AWS Architecture Blog, "Exponential Backoff and
Jitter", 2015), capped at `max_backoff`; when the registry returns, the first snapshot it
yields replaces the stale one (resync). Writes pass straight through, and fail with
`RegistryUnavailable` while it is down: a registration is only true once the registry has it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace

from meshkit.clock import SYSTEM_CLOCK, Clock
from meshkit.errors import RegistryUnavailable
from meshkit.registry.base import AddressPolicy, Registry, Snapshot
from meshkit.types import ServiceInstance, ServiceState

log = logging.getLogger(__name__)
FAILURES = (RegistryUnavailable, OSError)  # OSError covers ConnectionError and TimeoutError


class _Entry:
    __slots__ = ("confirmed_at", "snapshot", "stale", "task")

    def __init__(self, snapshot: Snapshot, now: float) -> None:
        self.snapshot = snapshot
        self.confirmed_at = now
        self.stale = False
        self.task: asyncio.Task[None] | None = None


class CachedRegistry:
    """A `Registry` and a `Resolver` in front of any registry; see the module docstring."""

    def __init__(
        self,
        registry: Registry,
        *,
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
        refresh_interval: float = 5.0,
        max_backoff: float = 30.0,
        base_backoff: float = 0.1,
        use_watch: bool = True,
        max_services: int = 10_000,
        owns_registry: bool = False,
    ) -> None:
        for name, value in (
            ("refresh_interval", refresh_interval),
            ("max_backoff", max_backoff),
            ("base_backoff", base_backoff),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"{name}: must be a number of seconds > 0, got {value!r}")
        if isinstance(max_services, bool) or not isinstance(max_services, int) or max_services < 1:
            raise ValueError(f"max_services: must be an integer >= 1, got {max_services!r}")
        self.registry = registry
        self._clock = clock
        self._rng = rng or random.Random()
        self._refresh_interval = refresh_interval
        self._max_backoff = max_backoff
        self._base_backoff = base_backoff
        self._use_watch = use_watch
        self._max_services = max_services
        self._owns_registry = owns_registry
        self._entries: dict[str, _Entry] = {}
        self._down = False

    @property
    def connected(self) -> bool:
        """False since the last failed contact with the registry, until the next success."""
        return not self._down

    async def start(self) -> None:
        """Start the registry underneath only if this cache owns it (`owns_registry=True`)."""
        if self._owns_registry:
            await self.registry.start()

    async def close(self) -> None:
        """Stop following (the cache is emptied); close the registry too if this cache owns it."""
        tasks = [e.task for e in self._entries.values() if e.task is not None]
        self._entries.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._owns_registry:
            await self.registry.close()

    # -- reads: from memory, falling back to the registry for a service not yet cached

    def known(self, service: str) -> Sequence[ServiceInstance] | None:
        """The cached instances (the data path's answer without I/O), or None when not cached."""
        entry = self._entries.get(service)
        return None if entry is None else entry.snapshot.instances

    async def resolve(self, service: str) -> Sequence[ServiceInstance]:
        entry = self._entries.get(service)
        if entry is not None:
            return entry.snapshot.instances
        return (await self.discover(service)).instances

    async def discover(self, service: str, use_cache: bool = True) -> Snapshot:
        """The service's snapshot; `stale=True` with `age` when the registry could not confirm it."""
        entry = self._entries.get(service)
        if entry is not None and use_cache:
            return self._served(entry)
        try:
            snap = await self.registry.instances(service)
        except FAILURES:
            self._set_down(True)
            if entry is None:
                raise
            return self._served(entry)
        self._accept(service, snap)
        return snap

    async def instances(self, service_name: str) -> Snapshot:
        return await self.discover(service_name)

    async def get(self, service_id: str) -> ServiceInstance | None:
        return await self.registry.get(service_id)

    async def services(self) -> dict[str, int]:
        try:
            return await self.registry.services()
        except FAILURES:
            self._set_down(True)
            return {s: len(e.snapshot.instances) for s, e in self._entries.items() if e.snapshot.instances}

    async def all_instances(self) -> list[ServiceInstance]:
        try:
            return await self.registry.all_instances()
        except FAILURES:
            self._set_down(True)
            return [i for e in self._entries.values() for i in e.snapshot.instances]

    def watch(self, service_name: str | None = None) -> AsyncIterator[Snapshot]:
        return self.registry.watch(service_name)

    # -- writes: through to the registry, then the cached copy is refreshed (read your writes)

    async def register(
        self, instance: ServiceInstance, *, address_policy: AddressPolicy | None = None
    ) -> ServiceInstance:
        record = await self.registry.register(instance, address_policy=address_policy)
        await self._refresh(record.service_name)
        return record

    async def deregister(self, service_id: str) -> bool:
        known = await self.registry.get(service_id)
        removed = await self.registry.deregister(service_id)
        if known is not None:
            await self._refresh(known.service_name)
        return removed

    async def heartbeat(self, service_id: str) -> None:
        await self.registry.heartbeat(service_id)

    async def set_state(
        self, service_id: str, state: ServiceState, reason: str = ""
    ) -> ServiceInstance | None:
        record = await self.registry.set_state(service_id, state, reason)
        if record is not None:
            await self._refresh(record.service_name)
        return record

    # -- keeping entries fresh

    def _served(self, entry: _Entry) -> Snapshot:
        if not entry.stale and self._use_watch:
            return entry.snapshot
        age = self._clock.monotonic() - entry.confirmed_at
        return replace(entry.snapshot, stale=entry.stale, age=age)

    def _accept(self, service: str, snap: Snapshot) -> None:
        now = self._clock.monotonic()
        entry = self._entries.get(service)
        if entry is None:
            while len(self._entries) >= self._max_services:
                evicted = self._entries.pop(next(iter(self._entries)))
                if evicted.task is not None:
                    evicted.task.cancel()
            entry = self._entries[service] = _Entry(snap, now)
            entry.task = asyncio.get_running_loop().create_task(self._follow(service))
        elif snap.revision >= entry.snapshot.revision or entry.stale:
            entry.snapshot = snap
            entry.stale = False
            entry.confirmed_at = now
        self._set_down(False)

    def _mark_stale(self, service: str) -> None:
        entry = self._entries.get(service)
        if entry is not None and not entry.stale:
            entry.stale = True
            if self._use_watch:  # the live watch confirmed it up to now
                entry.confirmed_at = self._clock.monotonic()
        self._set_down(True)

    def _set_down(self, down: bool) -> None:
        if down != self._down:
            self._down = down
            if down:
                log.warning("registry unavailable: serving discovery from cached snapshots")
            else:
                log.info("registry reachable again: cache resynced")

    async def _refresh(self, service: str) -> None:
        if service in self._entries:
            with contextlib.suppress(*FAILURES):
                self._accept(service, await self.registry.instances(service))

    def backoff(self, failures: int) -> float:
        """Full jitter: uniform in [0, min(max_backoff, base * 2**failures)]."""
        return self._rng.uniform(0.0, min(self._max_backoff, self._base_backoff * 2.0 ** min(failures, 32)))

    async def _follow(self, service: str) -> None:
        failures = 0
        while True:
            try:
                if self._use_watch:
                    async for snap in self.registry.watch(service):
                        self._accept(service, snap)
                        failures = 0
                    raise RegistryUnavailable("the registry ended the watch")
                if failures == 0:
                    await self._clock.sleep(self._refresh_interval)
                self._accept(service, await self.registry.instances(service))
                failures = 0
                continue
            except Exception as e:
                if not isinstance(e, FAILURES):
                    log.exception("following service %s failed", service)
                self._mark_stale(service)
            await self._clock.sleep(self.backoff(failures))
            failures += 1
