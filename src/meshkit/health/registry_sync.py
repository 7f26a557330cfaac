"""Keeps the health checker's watched set equal to the registry's instances, and writes back.

The checker probes what the registry holds; each state change it decides is written to
the registry (`set_state`), from where every cache and client sees it through `watch`.
One follower task re-reads the registry on each change (snapshots, not deltas, so a burst
of registrations costs one re-sync).

With several control planes on one registry (etcd), a `Leadership` (the etcd
`LeaderElection`) decides which one probes: only the leader runs the checker, so no
instance is probed twice; when it loses the lease another takes over. A TTL check's
report (a heartbeat) may reach any plane, so, as a Consul TTL update is a write its check's
owner sees, `report_ttl` on a plane standing by writes it to the registry (`report_ttl` of
the etcd registry) and the elected plane follows those writes (`ttl_reports`) into its
checker. A registry without them (the embedded one) has no leadership: its plane always checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
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


TtlReport = tuple[str, str, str]  # (service_id, status, note)
ReportTtl = Callable[[str, str, str], Awaitable[None]]
FollowTtlReports = Callable[[], AsyncGenerator[TtlReport, None]]


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

    async def report_ttl(self, service_id: str, status: str, note: str = "") -> None:
        """A TTL check's report: to this checker when it is the active one, else to the registry.

        KeyError/ValueError from the checker (an instance it does not watch, or one without a
        ttl check, a bad status); from the registry UnknownInstance, ValueError for a bad status,
        RegistryUnavailable.
        """
        write: ReportTtl | None = getattr(self.registry, "report_ttl", None)
        if self.active or write is None:
            await self.checker.report_ttl(service_id, status, note)
        else:
            await write(service_id, status, note)

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
        async with asyncio.TaskGroup() as group:
            group.create_task(self._follow())
            group.create_task(self._follow_reports())

    async def _follow(self) -> None:
        while True:
            try:
                async for _ in self.registry.watch(None):
                    await self.resync()
                return  # the registry closed
            except (RegistryUnavailable, OSError) as exc:
                log.warning("health: registry watch failed, retrying: %s", exc)
                await asyncio.sleep(self._retry_delay)

    async def _follow_reports(self) -> None:
        """While elected: feed the TTL reports other planes wrote to the registry to this checker."""
        follow: FollowTtlReports | None = getattr(self.registry, "ttl_reports", None)
        if follow is None:
            return
        while True:
            try:
                reports = follow()
                async with contextlib.aclosing(reports):
                    async for service_id, status, note in reports:
                        with contextlib.suppress(KeyError, ValueError):  # not (yet) watched, or not ttl
                            await self.checker.report_ttl(service_id, status, note)
                return  # the registry closed
            except (RegistryUnavailable, OSError) as exc:
                log.warning("health: following ttl reports failed, retrying: %s", exc)
            except Exception:  # never let it take the instance sync (its sibling task) down with it
                log.exception("health: following ttl reports failed, retrying")
            await asyncio.sleep(self._retry_delay)
