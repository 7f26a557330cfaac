"""Keeps the health checker's watched set equal to the registry's instances, and writes back.

The checker probes what the registry holds; each state change it decides is written to
the registry (`set_state`), from where every cache and client sees it through `watch`.
One follower task re-reads the registry on each change (snapshots, not deltas, so a burst
of registrations costs one re-sync).

With several control planes on one registry (etcd), a `Leadership` (the etcd
`LeaderElection`) decides which one probes: only the leader runs the checker, so no
instance is probed twice; when it loses the lease another takes over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

from meshkit.errors import RegistryUnavailable
from meshkit.health.checker import HealthChecker
from meshkit.registry.base import Registry
from meshkit.types import ServiceInstance, ServiceState

log = logging.getLogger(__name__)


class Leadership(Protocol):
    @property
    def is_leader(self) -> bool: ...
    def start(self) -> None: ...
    async def wait_for_leadership(self) -> None: ...
    async def wait_for_loss(self) -> None: ...
    async def close(self, *, resign: bool = True) -> None: ...


class RegistryHealthSync:
    def __init__(
        self,
        registry: Registry,
        *,
        leadership: Leadership | None = None,
        retry_delay: float = 1.0,
        **checker_options: Any,
    ) -> None:
        self.registry = registry
        self.leadership = leadership
        self.checker = HealthChecker(on_transition=self.write_back, **checker_options)
        self._retry_delay = retry_delay
        self._task: asyncio.Task[None] | None = None

    @property
    def active(self) -> bool:
        """Whether this process is the one probing (always, without a leadership)."""
        return self._task is not None and (self.leadership is None or self.leadership.is_leader)

    async def write_back(
        self, instance: ServiceInstance, old: ServiceState, new: ServiceState, reason: str
    ) -> None:
        try:
            await self.registry.set_state(instance.service_id, new, reason)
        except (RegistryUnavailable, OSError) as exc:
            log.warning("health: could not record %s -> %s for %s: %s", old, new, instance.service_id, exc)

    async def resync(self) -> None:
        self.checker.sync(await self.registry.all_instances())

    async def start(self) -> None:
        if self.leadership is None:
            await self.resync()
            await self.checker.start()
            self._task = asyncio.create_task(self._follow(), name="meshkit-health-sync")
            return
        self.leadership.start()
        self._task = asyncio.create_task(self._lead(), name="meshkit-health-leader")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.checker.stop()
        if self.leadership is not None:
            await self.leadership.close()

    async def _lead(self) -> None:
        """Probe while elected; stand by (checker stopped) while another plane leads."""
        assert self.leadership is not None
        while True:
            await self.leadership.wait_for_leadership()
            log.info("health: elected; this control plane runs the health checks")
            follower = asyncio.create_task(self._follow_started())
            try:
                await self.leadership.wait_for_loss()
            finally:
                follower.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await follower
                await self.checker.stop()
            log.info("health: leadership lost; standing by")

    async def _follow_started(self) -> None:
        while True:
            try:
                await self.resync()
                break
            except (RegistryUnavailable, OSError) as exc:
                log.warning("health: registry read failed, retrying: %s", exc)
                await asyncio.sleep(self._retry_delay)
        await self.checker.start()
        await self._follow()

    async def _follow(self) -> None:
        while True:
            try:
                async for _ in self.registry.watch(None):
                    await self.resync()
                return  # the registry closed
            except (RegistryUnavailable, OSError) as exc:
                log.warning("health: registry watch failed, retrying: %s", exc)
                await asyncio.sleep(self._retry_delay)
