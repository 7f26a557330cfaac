"""EmbeddedRegistry: the default registry, in-process, persisted to SQLite in a data directory.

Writes go through a group-commit writer (writer.py) and are acknowledged only once their
batch is committed; the in-memory index, which serves every read, is updated at that
moment too, so a reader never sees a write that could still be lost. `data_dir=None`
keeps everything in memory (tests, `ServiceMesh()` with no arguments) with the same
behaviour. A write whose caller was cancelled may still be committed.

Expiry follows Consul: an instance with a `ttl` that misses its heartbeats expires, and an
instance that stays UNHEALTHY ("critical") longer than `deregister_critical_after` (the
check's own value when it has a check) is deregistered. Heartbeats only touch memory: after
a restart every TTL starts afresh.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from meshkit.clock import SYSTEM_CLOCK, Clock
from meshkit.errors import RegistryUnavailable
from meshkit.registry.base import AddressPolicy, Snapshot, UnknownInstance
from meshkit.registry.expiry import ExpiryTracker
from meshkit.registry.index import InstanceIndex
from meshkit.registry.store import SqliteStore, Synchronous
from meshkit.registry.validation import admit
from meshkit.registry.writer import GroupCommitWriter, Op
from meshkit.types import ServiceInstance, ServiceState, validate_service_name

log = logging.getLogger(__name__)
MAX_SETTING_BYTES = 1 << 20


class EmbeddedRegistry:
    """The registry the control plane runs by default; see the module docstring."""

    def __init__(
        self,
        data_dir: str | Path | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
        deregister_critical_after: float = 60.0,
        batch_max: int = 500,
        reap_interval: float = 1.0,
        synchronous: Synchronous = "FULL",
        address_policy: AddressPolicy | None = None,
    ) -> None:
        for name, value in (
            ("deregister_critical_after", deregister_critical_after),
            ("reap_interval", reap_interval),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"{name}: must be a number of seconds > 0, got {value!r}")
        if isinstance(batch_max, bool) or not isinstance(batch_max, int) or batch_max < 1:
            raise ValueError(f"batch_max: must be an integer >= 1, got {batch_max!r}")
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self._store = SqliteStore(self.data_dir, synchronous) if self.data_dir is not None else None
        self._clock = clock
        self._reap_interval = reap_interval
        self._address_policy = address_policy
        self._index = InstanceIndex()
        self._expiry = ExpiryTracker(clock, deregister_critical_after)
        self._settings: dict[str, bytes] = {}
        self._writer = GroupCommitWriter(self._commit, batch_max)
        self._reaper: asyncio.Task[None] | None = None
        self._open = False

    @property
    def revision(self) -> int:
        return self._index.revision

    async def start(self) -> None:
        if self._open:
            return
        if self._store is not None:
            loaded = await self._store.open()
            self._index.load(loaded.instances, loaded.revision)
            self._settings = loaded.settings
        self._expiry.reset(self._index.by_id.values())
        self._open = True
        self._writer.start()
        self._reaper = asyncio.create_task(self._reap_loop())

    async def close(self) -> None:
        """Refuse new writes, commit the queued ones, stop, and end every watch."""
        if not self._open:
            return
        self._open = False
        if self._reaper is not None:
            self._reaper.cancel()
            await asyncio.gather(self._reaper, return_exceptions=True)
        await self._writer.stop()
        if self._store is not None:
            await self._store.close()
        self._index.wake_all()

    async def __aenter__(self) -> EmbeddedRegistry:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- writes: queued, committed in batches, acknowledged once durable

    async def register(
        self, instance: ServiceInstance, *, address_policy: AddressPolicy | None = None
    ) -> ServiceInstance:
        record = admit(instance, address_policy or self._address_policy)
        result: ServiceInstance = await self._submit("put", record.service_id, record)
        return result

    async def deregister(self, service_id: str) -> bool:
        return bool(await self._submit("delete", service_id, None))

    async def set_state(
        self, service_id: str, state: ServiceState, reason: str = ""
    ) -> ServiceInstance | None:
        try:
            state = ServiceState(state)
        except ValueError:
            allowed = ", ".join(s.value for s in ServiceState)
            raise ValueError(f"state: must be one of {allowed}, got {state!r}") from None
        result: ServiceInstance | None = await self._submit("state", service_id, (state, reason))
        return result

    async def heartbeat(self, service_id: str) -> None:
        self._check_open()
        if service_id not in self._index.by_id:
            raise UnknownInstance(service_id)
        self._expiry.heartbeat(service_id)

    async def put_setting(self, key: str, value: Any) -> None:
        """Durably store a JSON value under `key` (the control plane's settings)."""
        if not isinstance(key, str) or not 1 <= len(key) <= 128:
            raise ValueError(f"key: must be a string of 1-128 characters, got {key!r}")
        try:
            body = orjson.dumps(value)
        except TypeError as e:
            raise ValueError(f"value: must be JSON-serialisable ({e})") from None
        if len(body) > MAX_SETTING_BYTES:
            raise ValueError(f"value: at most {MAX_SETTING_BYTES} bytes of JSON, got {len(body)}")
        await self._submit("setting", key, body)

    async def expire_now(self) -> int:
        """Deregister every instance whose TTL or critical time has run out; the reaper's pass."""
        futures = [self._submit("expire", sid, None) for sid in self._expiry.due(self._index.by_id)]
        results = await asyncio.gather(*futures, return_exceptions=True)
        return sum(1 for r in results if r is True)

    # -- reads: from memory

    async def get(self, service_id: str) -> ServiceInstance | None:
        self._check_open()
        return self._index.by_id.get(service_id)

    async def instances(self, service_name: str) -> Snapshot:
        self._check_open()
        return self._index.snapshot(service_name)

    async def services(self) -> dict[str, int]:
        self._check_open()
        return self._index.counts()

    async def all_instances(self) -> list[ServiceInstance]:
        self._check_open()
        return list(self._index.by_id.values())

    async def get_setting(self, key: str, default: Any = None) -> Any:
        self._check_open()
        body = self._settings.get(key)
        return orjson.loads(body) if body is not None else default

    async def watch(self, service_name: str | None = None) -> AsyncGenerator[Snapshot, None]:
        """The current snapshot, then one per change; a slow watcher gets only the latest."""
        if service_name is not None:
            validate_service_name(service_name)
        self._check_open()
        wake = asyncio.Event()
        self._index.subscribe(service_name, wake)
        try:
            snap = self._snapshot(service_name)
            last = snap.revision
            yield snap
            while True:
                await wake.wait()
                wake.clear()
                self._check_open()
                snap = self._snapshot(service_name)
                if snap.revision > last:
                    last = snap.revision
                    yield snap
        finally:
            self._index.unsubscribe(service_name, wake)

    def _snapshot(self, service_name: str | None) -> Snapshot:
        return self._index.snapshot_all() if service_name is None else self._index.snapshot(service_name)

    def _check_open(self) -> None:
        if not self._open:
            raise RegistryUnavailable("registry is not running (closed or not started)")

    # -- the writer

    def _submit(self, kind: str, key: str, value: Any) -> asyncio.Future[Any]:
        self._check_open()
        return self._writer.submit(kind, key, value)

    async def _commit(self, batch: list[Op]) -> None:
        now = self._clock.monotonic()
        index = self._index
        overlay: dict[str, ServiceInstance | None] = {}
        settings: dict[str, bytes] = {}
        changes: list[tuple[Op, ServiceInstance | None, int]] = []
        results: list[Any] = []
        revision = index.revision
        for op in batch:
            current = overlay[op.key] if op.key in overlay else index.by_id.get(op.key)
            new, result = self._plan(op, current, now, settings)
            results.append(result)
            if new is not current:
                revision += 1
                overlay[op.key] = new
                changes.append((op, new, revision))
        if self._store is not None and (overlay or settings):
            puts = [inst for inst in overlay.values() if inst is not None]
            deletes = [sid for sid, inst in overlay.items() if inst is None]
            await self._store.write(puts, deletes, list(settings.items()), revision)
        for op, new, rev in changes:
            if new is None:
                index.remove(op.key, rev)
            else:
                index.put(new, rev)
            self._expiry.changed(op.key, new, registered=op.kind == "put")
        self._settings.update(settings)
        index.notify()
        for op, result in zip(batch, results, strict=True):
            if not op.future.done():
                op.future.set_result(result)

    def _plan(
        self, op: Op, current: ServiceInstance | None, now: float, settings: dict[str, bytes]
    ) -> tuple[ServiceInstance | None, Any]:
        """What `op` does to `current`: (the new record, or `current` for no change; the result)."""
        if op.kind == "put":
            return op.value, op.value
        if op.kind == "delete":
            return None, current is not None
        if op.kind == "state":
            state, reason = op.value
            if current is None or current.state == state:
                return current, current
            log.info("instance %s: %s -> %s %s", op.key, current.state.value, state.value, reason)
            new = replace(current, state=state)
            return new, new
        if op.kind == "expire":
            why = self._expiry.reason(current, now) if current is not None else None
            if why is None:
                return current, False
            log.info("instance %s deregistered: %s", op.key, why)
            return None, True
        settings[op.key] = op.value
        return current, None

    async def _reap_loop(self) -> None:
        while self._open:
            await self._clock.sleep(self._reap_interval)
            try:
                await self.expire_now()
            except RegistryUnavailable:
                return
            except Exception:
                log.exception("registry reaper pass failed")
