"""Keeps the health checker's watched set equal to the registry's instances, and writes back.

The checker probes what the registry holds; each state change it decides is written to
the registry (`set_state`), from where every cache and client sees it through `watch`.
One follower task re-reads the registry on each change (snapshots, not deltas, so a burst
of registrations costs one re-sync).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from meshkit.errors import RegistryUnavailable
from meshkit.health.checker import HealthChecker
from meshkit.registry.base import Registry
from meshkit.types import ServiceInstance, ServiceState

log = logging.getLogger(__name__)


class RegistryHealthSync:
    def __init__(self, registry: Registry, *, retry_delay: float = 1.0, **checker_options: Any) -> None:
        self.registry = registry
        self.checker = HealthChecker(on_transition=self.write_back, **checker_options)
        self._retry_delay = retry_delay
        self._task: asyncio.Task[None] | None = None

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
        await self.resync()
        await self.checker.start()
        self._task = asyncio.create_task(self._follow(), name="meshkit-health-sync")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.checker.stop()

    async def _follow(self) -> None:
        while True:
            try:
                async for _ in self.registry.watch(None):
                    await self.resync()
                return  # the registry closed
            except (RegistryUnavailable, OSError) as exc:
                log.warning("health: registry watch failed, retrying: %s", exc)
                await asyncio.sleep(self._retry_delay)
