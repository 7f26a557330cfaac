"""ServiceRegistration: a service registers itself on start-up, heartbeats, and leaves on shutdown.

The lifecycle Consul's agents and Eureka's clients give a service: register once the
service listens, renew (heartbeat) on an interval well inside the TTL (a third of it, as
Consul's docs advise for TTL checks), and deregister on a clean shutdown so callers stop
picking it at once instead of waiting for a health check to notice. A registry that is
down at start-up does not stop the service: registration is retried in the background
with capped, jittered backoff; a heartbeat answered "unknown instance" (the plane lost it,
or the TTL ran out during a pause) registers it again. A refusal that retrying cannot fix
(a bad token, a bad field) is raised from `start()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import replace

from meshkit.clock import SYSTEM_CLOCK, Clock
from meshkit.errors import RegistryUnavailable
from meshkit.registry.base import Registry, UnknownInstance
from meshkit.registry.remote import RemoteRegistry
from meshkit.remote import ControlPlaneClient
from meshkit.types import HealthCheck, ServiceInstance, ServiceState, default_instance_id

log = logging.getLogger(__name__)
DEFAULT_HEARTBEAT_INTERVAL = 10.0
MAX_RETRY_DELAY = 30.0

RegistryTarget = Registry | ControlPlaneClient | str


def open_target(target: RegistryTarget, token: str | None) -> tuple[Registry, bool]:
    """A registry for `target` (a Registry, a plane client or a plane URL), and whether we own it."""
    if isinstance(target, str):
        return RemoteRegistry(ControlPlaneClient(target, token), owns_client=True), True
    if isinstance(target, ControlPlaneClient):
        return RemoteRegistry(target), False
    return target, False


def heartbeat_every(ttl: float | None, check: HealthCheck | None, interval: float | None) -> float:
    """The heartbeat interval: as given, else a third of the shortest TTL, else 10 s."""
    if interval is not None:
        if isinstance(interval, bool) or not isinstance(interval, int | float) or interval <= 0:
            raise ValueError(f"heartbeat_interval: must be a number of seconds > 0, got {interval!r}")
        return float(interval)
    ttls = [t for t in (ttl, check.ttl if check is not None else None) if t]
    return min(ttls) / 3.0 if ttls else DEFAULT_HEARTBEAT_INTERVAL


class ServiceRegistration:
    """Registers one instance while a service runs: `await reg.start()` ... `await reg.stop()`."""

    def __init__(
        self,
        registry_or_url: RegistryTarget,
        name: str,
        address: str,
        port: int,
        *,
        tags: Sequence[str] = (),
        metadata: Mapping[str, str] | None = None,
        check: HealthCheck | None = None,
        ttl: float | None = None,
        heartbeat_interval: float | None = None,
        token: str | None = None,
        weight: int = 100,
        zone: str = "",
        version: str = "",
        rng: random.Random | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.instance = ServiceInstance(
            default_instance_id(name, address, port),
            name,
            address,
            port,
            tags=list(tags),
            metadata=dict(metadata or {}),
            state=ServiceState.UNKNOWN if check is not None else ServiceState.HEALTHY,
            weight=weight,
            zone=zone,
            version=version,
            check=check,
            ttl=ttl,
        )
        self.heartbeat_interval = heartbeat_every(ttl, check, heartbeat_interval)
        self.registry, self._owns_registry = open_target(registry_or_url, token)
        self._rng = rng or random.Random()
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self.registered = False
        self.heartbeats = 0  # heartbeats the registry accepted

    @property
    def service_id(self) -> str:
        return self.instance.service_id

    async def _register(self) -> None:
        record = await self.registry.register(self.instance)
        self.instance = replace(self.instance, service_id=record.service_id)
        self.registered = True
        log.info("registered %s as %s", self.instance.endpoint, self.service_id)

    async def start(self) -> None:
        """Register now (or, if the registry is down, keep trying in the background) and heartbeat."""
        if self._task is not None:
            return
        try:
            await self._register()
        except (RegistryUnavailable, OSError) as exc:
            log.warning("registry unavailable, will keep trying to register %s: %s", self.service_id, exc)
        self._task = asyncio.get_running_loop().create_task(self._keep_alive())

    async def _keep_alive(self) -> None:
        failures = 0
        while True:
            delay = self.heartbeat_interval
            if failures:
                delay = min(
                    delay, self._rng.uniform(0.0, min(MAX_RETRY_DELAY, 0.5 * 2.0 ** min(failures, 16)))
                )
            await self._clock.sleep(delay)
            try:
                if not self.registered:
                    await self._register()
                else:
                    await self.registry.heartbeat(self.service_id)
                    self.heartbeats += 1
                failures = 0
            except UnknownInstance:
                log.warning("registry forgot %s; registering it again", self.service_id)
                self.registered = False
                failures = 1
            except (RegistryUnavailable, OSError) as exc:
                failures += 1
                if failures == 1:
                    log.warning("heartbeat for %s failed: %s", self.service_id, exc)
            except Exception:
                failures += 1
                log.exception("keeping %s registered failed", self.service_id)

    async def stop(self) -> None:
        """Stop heartbeating and deregister (a failure is logged: the TTL or health check will reap it)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.registered:
            self.registered = False
            try:
                await self.registry.deregister(self.service_id)
                log.info("deregistered %s", self.service_id)
            except Exception as exc:
                log.warning("could not deregister %s: %s", self.service_id, exc)
        if self._owns_registry:
            self._owns_registry = False
            await self.registry.close()

    async def __aenter__(self) -> ServiceRegistration:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
