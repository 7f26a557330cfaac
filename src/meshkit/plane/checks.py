"""Health checks for every instance: its own check, or the plane's default one.

Instances registered without a check (every seed client) still get checked, the way the
seed asked Consul to probe `/health` on each registration. The default is not written
into the registry record: it is applied when the checker's watched set is synced, so a
`configure/health-check` reaches the instances that exist as well as later ones, and an
instance that brought its own check keeps it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from meshkit.health.registry_sync import RegistryHealthSync
from meshkit.registry.base import Registry
from meshkit.types import HealthCheck, ServiceInstance


def with_default_check(instances: Iterable[ServiceInstance], default: HealthCheck) -> list[ServiceInstance]:
    """The instances as the checker should see them: those without a check get `default`."""
    return [i if i.check is not None else replace(i, check=default) for i in instances]


class DefaultCheckSync(RegistryHealthSync):
    """`RegistryHealthSync` that checks instances without a check of their own with `default`."""

    def __init__(self, registry: Registry, *, default: HealthCheck, **options: Any) -> None:
        super().__init__(registry, **options)
        self.default = default

    async def resync(self) -> None:
        self.checker.sync(with_default_check(await self.registry.all_instances(), self.default))

    async def set_default(self, default: HealthCheck) -> None:
        """Use `default` from now on, for the instances that exist too (their schedules restart)."""
        self.default = default
        await self.resync()
