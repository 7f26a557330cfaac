"""The embedded registry's in-memory index: instances by id and by service, with revisions.

Every read is served from here. A service's snapshot tuple is built at most once per
change and then shared by every reader, so discovery costs a dict lookup. Each change
carries the global revision it was committed at (etcd's mod_revision); a service keeps the
revision of its last change even after its last instance leaves, so a watcher's revisions
only ever increase. Watchers are asyncio Events: setting one is O(1), and a watcher that
has not run yet just finds it set once, which is how slow watchers coalesce.
"""

from __future__ import annotations

import asyncio

from meshkit.registry.base import Snapshot
from meshkit.types import ServiceInstance

ALL = None  # the watch key for "any service"


class InstanceIndex:
    __slots__ = (
        "_all",
        "_by_service",
        "_changed",
        "_service_rev",
        "_snapshots",
        "_watchers",
        "by_id",
        "revision",
    )

    def __init__(self) -> None:
        self.by_id: dict[str, ServiceInstance] = {}
        self.revision = 0
        self._by_service: dict[str, dict[str, ServiceInstance]] = {}
        self._service_rev: dict[str, int] = {}
        self._snapshots: dict[str, Snapshot] = {}
        self._all: Snapshot | None = None
        self._changed: set[str] = set()
        self._watchers: dict[str | None, set[asyncio.Event]] = {}

    def load(self, instances: list[ServiceInstance], revision: int) -> None:
        """Replace the contents with what was read from disk, all at `revision`."""
        self.by_id.clear()
        self._by_service.clear()
        for inst in instances:
            self.by_id[inst.service_id] = inst
            self._by_service.setdefault(inst.service_name, {})[inst.service_id] = inst
        self.revision = revision
        self._service_rev = dict.fromkeys(self._by_service, revision)
        self._snapshots.clear()
        self._all = None

    def put(self, inst: ServiceInstance, revision: int) -> None:
        old = self.by_id.get(inst.service_id)
        if old is not None and old.service_name != inst.service_name:
            self.remove(old.service_id, revision)
        self.by_id[inst.service_id] = inst
        self._by_service.setdefault(inst.service_name, {})[inst.service_id] = inst
        self._touch(inst.service_name, revision)

    def remove(self, service_id: str, revision: int) -> ServiceInstance | None:
        inst = self.by_id.pop(service_id, None)
        if inst is not None:
            members = self._by_service[inst.service_name]
            del members[service_id]
            if not members:
                del self._by_service[inst.service_name]
            self._touch(inst.service_name, revision)
        return inst

    def _touch(self, service: str, revision: int) -> None:
        self.revision = revision
        self._service_rev[service] = revision
        self._snapshots.pop(service, None)
        self._all = None
        self._changed.add(service)

    def snapshot(self, service: str) -> Snapshot:
        snap = self._snapshots.get(service)
        if snap is None:
            revision = self._service_rev.get(service)
            if revision is None:  # never seen: do not cache, callers may ask for any name
                return Snapshot(service, (), 0)
            members = self._by_service.get(service)
            snap = Snapshot(service, tuple(members.values()) if members else (), revision)
            self._snapshots[service] = snap
        return snap

    def snapshot_all(self) -> Snapshot:
        """Every instance, as one snapshot with service "" at the global revision."""
        if self._all is None:
            self._all = Snapshot("", tuple(self.by_id.values()), self.revision)
        return self._all

    def counts(self) -> dict[str, int]:
        return {name: len(members) for name, members in self._by_service.items()}

    def subscribe(self, service: str | None, wake: asyncio.Event) -> None:
        self._watchers.setdefault(service, set()).add(wake)

    def unsubscribe(self, service: str | None, wake: asyncio.Event) -> None:
        watchers = self._watchers.get(service)
        if watchers is not None:
            watchers.discard(wake)
            if not watchers:
                del self._watchers[service]

    def notify(self) -> None:
        """Wake the watchers of every service changed since the last call."""
        if not self._changed:
            return
        for service in self._changed:
            for wake in self._watchers.get(service, ()):
                wake.set()
        for wake in self._watchers.get(ALL, ()):
            wake.set()
        self._changed.clear()

    def wake_all(self) -> None:
        for watchers in self._watchers.values():
            for wake in watchers:
                wake.set()
