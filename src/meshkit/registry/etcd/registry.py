"""EtcdRegistry: the registry kept in an etcd v3 cluster, shared by several control planes.

Instances are keys under a prefix (see `keys.py`), TTLs are etcd leases (a heartbeat is
one lease keep-alive), and the global revision is etcd's own. Every read is linearizable,
so a registration acknowledged through one control plane is seen by all the others, and
every read-modify-write is a transaction guarded by the key's mod_revision (optimistic
concurrency, as Kubernetes writes to etcd), so two planes never overwrite each other.
`watch` follows a service with an etcd watch from the revision of its last snapshot; when
the stream breaks it resumes from that revision on another member, and when the history
was compacted meanwhile it resyncs from a fresh read. A TTL check's report (a heartbeat
sent to a plane that is not running the checker) is a write too, which the elected plane
follows with `ttl_reports` (see `reports.py`). Staleness when etcd is down is the job of
`CachedRegistry` in front: here a read or write that no member can serve raises
`RegistryUnavailable` within `timeout`.

Instances that stay UNHEALTHY longer than `deregister_critical_after` (the check's value
when it has one) are removed by a reaper, as Consul's deregister_critical_service_after
does; the removal is guarded by the mod_revision it saw, so several planes may reap at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Sequence
from dataclasses import replace
from typing import Any

import orjson

from meshkit.clock import SYSTEM_CLOCK, Clock
from meshkit.errors import RegistryUnavailable
from meshkit.registry.base import AddressPolicy, Snapshot, UnknownInstance
from meshkit.registry.etcd import keys
from meshkit.registry.etcd.client import URL_FORMAT, Endpoint, EtcdClient, parse_endpoints, unb64
from meshkit.registry.etcd.reports import Report, encode_report, follow_reports, put_report
from meshkit.registry.etcd.watch import follow
from meshkit.registry.validation import admit
from meshkit.types import ServiceInstance, ServiceState, validate_service_name

log = logging.getLogger(__name__)


class EtcdRegistry:
    """A `Registry` over etcd; see the module docstring."""

    def __init__(
        self,
        endpoints: Sequence[Endpoint] | str,
        *,
        prefix: str = "/meshkit/",
        clock: Clock = SYSTEM_CLOCK,
        timeout: float = 5.0,
        deregister_critical_after: float = 60.0,
        reap_interval: float | None = 5.0,
        address_policy: AddressPolicy | None = None,
    ) -> None:
        for name, value in (("deregister_critical_after", deregister_critical_after), ("timeout", timeout)):
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"{name}: must be a number of seconds > 0, got {value!r}")
        if reap_interval is not None and (not isinstance(reap_interval, int | float) or reap_interval <= 0):
            raise ValueError(f"reap_interval: must be None or a number of seconds > 0, got {reap_interval!r}")
        self.client = EtcdClient(parse_endpoints(endpoints) if isinstance(endpoints, str) else endpoints,
                                 timeout=timeout)  # fmt: skip
        self.keys = keys.Keyspace(prefix)
        self._clock = clock
        self._critical_after = float(deregister_critical_after)
        self._reap_interval = reap_interval
        self._address_policy = address_policy
        self._open = False
        self._reaper: asyncio.Task[None] | None = None

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> EtcdRegistry:
        """`etcd://host:port[,host:port...]`, as `meshkit serve --registry` takes it."""
        if not isinstance(url, str) or not url.startswith("etcd://"):
            raise ValueError(f"registry: expected {URL_FORMAT}, got {url!r}")
        return cls(parse_endpoints(url), **kwargs)

    @property
    def revision(self) -> int:
        return self.client.revision

    async def start(self) -> None:
        """Check that etcd answers and is 3.4 or newer; RegistryUnavailable naming it if not."""
        if self._open:
            return
        try:
            await self.client.check_version()
            await self.client.range(self.keys.ids)  # a member with a quorum, not only a live process
        except BaseException:
            await self.client.close()
            raise
        self._open = True
        if self._reap_interval is not None:
            self._reaper = asyncio.create_task(self._reap_loop(self._reap_interval))

    async def close(self) -> None:
        self._open = False
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
            self._reaper = None
        await self.client.close()

    async def __aenter__(self) -> EtcdRegistry:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- writes

    async def register(
        self, instance: ServiceInstance, *, address_policy: AddressPolicy | None = None
    ) -> ServiceInstance:
        record = admit(instance, address_policy or self._address_policy)
        self._check_open()
        sid, service = record.service_id, record.service_name
        lease = await self.client.grant(record.ttl) if record.ttl is not None else 0
        id_key = self.keys.id(sid)
        puts = [
            keys.put(self.keys.instance(service, sid), keys.encode(record, self._clock.time()), lease),
            keys.put(id_key, service.encode(), lease),
        ]
        while True:
            reply = await self.client.txn([keys.absent(id_key)], puts, [keys.get(id_key)])
            if reply.get("succeeded"):
                return record
            for kv in keys.first_range(reply):  # re-registration: replace, possibly moving service
                old = unb64(kv.get("value")).decode()
                moves = [keys.delete(self.keys.instance(old, sid))] if old != service else []
                guard = [keys.unchanged(id_key, int(kv["mod_revision"]))]
                if (await self.client.txn(guard, moves + puts, [])).get("succeeded"):
                    return record

    async def deregister(self, service_id: str) -> bool:
        self._check_open()
        while True:
            found = await self._owner(service_id)
            if found is None:
                return False
            service, mod = found
            deletes = [
                keys.delete(self.keys.instance(service, service_id)),
                keys.delete(self.keys.id(service_id)),
                keys.delete(self.keys.report(service_id)),
            ]
            reply = await self.client.txn([keys.unchanged(self.keys.id(service_id), mod)], deletes, [])
            if reply.get("succeeded"):
                return True

    async def heartbeat(self, service_id: str) -> None:
        """Refresh the instance's lease (one keep-alive); UnknownInstance once it has expired."""
        self._check_open()
        kvs, _ = await self.client.range(self.keys.id(service_id))
        if not kvs:
            raise UnknownInstance(service_id)
        lease = int(kvs[0].get("lease", 0))
        if lease and await self.client.keepalive_once(lease) <= 0:
            raise UnknownInstance(service_id)

    async def report_ttl(self, service_id: str, status: str, note: str = "") -> None:
        """Record a TTL check's pass/warn/fail for the elected plane (`ttl_reports`), on the instance's lease."""
        value = encode_report(status, note)
        self._check_open()
        await put_report(self.client, self.keys, service_id, value)

    async def set_state(
        self, service_id: str, state: ServiceState, reason: str = ""
    ) -> ServiceInstance | None:
        try:
            state = ServiceState(state)
        except ValueError:
            allowed = ", ".join(s.value for s in ServiceState)
            raise ValueError(f"state: must be one of {allowed}, got {state!r}") from None
        self._check_open()
        while True:
            found = await self._record(service_id)
            if found is None:
                return None
            key, kv, current = found
            if current.state == state:
                return current
            new = replace(current, state=state)
            put = keys.put(key, keys.encode(new, self._clock.time()), ignore_lease=True)
            if (await self.client.txn([keys.unchanged(key, int(kv["mod_revision"]))], [put], [])).get(
                "succeeded"
            ):
                log.info("instance %s: %s -> %s %s", service_id, current.state.value, state.value, reason)
                return new

    async def put_setting(self, key: str, value: Any) -> None:
        """Store a JSON value under `key` (the control plane's settings), shared by every plane."""
        if not isinstance(key, str) or not 1 <= len(key) <= 128:
            raise ValueError(f"key: must be a string of 1-128 characters, got {key!r}")
        try:
            body = orjson.dumps(value)
        except TypeError as e:
            raise ValueError(f"value: must be JSON-serialisable ({e})") from None
        self._check_open()
        await self.client.txn([], [keys.put(self.keys.settings + key.encode(), body)], [])

    async def expire_now(self) -> int:
        """Deregister every instance UNHEALTHY for longer than its limit; the reaper's pass."""
        self._check_open()
        kvs, _ = await self.client.range(*self.keys.service_range(None))
        now, removed = self._clock.time(), 0
        for kv in kvs:
            inst = keys.decode(kv)
            limit = inst.check.deregister_critical_after if inst.check is not None else self._critical_after
            if inst.state != ServiceState.UNHEALTHY or now - keys.since(kv) < limit:
                continue
            key = unb64(kv["key"])
            sid = inst.service_id
            deletes = [keys.delete(key), keys.delete(self.keys.id(sid)), keys.delete(self.keys.report(sid))]
            if (await self.client.txn([keys.unchanged(key, int(kv["mod_revision"]))], deletes, [])).get(
                "succeeded"
            ):
                log.info("instance %s deregistered: unhealthy for over %gs", inst.service_id, limit)
                removed += 1
        return removed

    # -- reads: linearizable, from the cluster

    async def get(self, service_id: str) -> ServiceInstance | None:
        self._check_open()
        found = await self._record(service_id)
        return found[2] if found is not None else None

    async def instances(self, service_name: str) -> Snapshot:
        validate_service_name(service_name)
        self._check_open()
        kvs, revision = await self.client.range(*self.keys.service_range(service_name))
        return Snapshot(service_name, tuple(keys.decode(kv) for kv in kvs), revision)

    async def services(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for inst in await self.all_instances():
            counts[inst.service_name] = counts.get(inst.service_name, 0) + 1
        return counts

    async def all_instances(self) -> list[ServiceInstance]:
        self._check_open()
        kvs, _ = await self.client.range(*self.keys.service_range(None))
        return [keys.decode(kv) for kv in kvs]

    async def get_setting(self, key: str, default: Any = None) -> Any:
        self._check_open()
        kvs, _ = await self.client.range(self.keys.settings + key.encode())
        return orjson.loads(unb64(kvs[0].get("value"))) if kvs else default

    async def watch(self, service_name: str | None = None) -> AsyncGenerator[Snapshot, None]:
        """The current snapshot, then one per change, following etcd from the last revision."""
        if service_name is not None:
            validate_service_name(service_name)
        self._check_open()
        snapshots = follow(self.client, service_name, *self.keys.service_range(service_name))
        async with contextlib.aclosing(snapshots):
            async for snap in snapshots:
                yield snap
                self._check_open()

    async def ttl_reports(self, *, after: int | None = None) -> AsyncGenerator[Report, None]:
        """(service_id, status, note) of every `report_ttl` after this starts (or revision `after`)."""
        self._check_open()
        reports = follow_reports(self.client, self.keys.reports, after)
        async with contextlib.aclosing(reports):
            async for report in reports:
                yield report
                self._check_open()

    # -- internals

    async def _owner(self, service_id: str) -> tuple[str, int] | None:
        """(service, mod_revision of the id key) of a registered id, or None."""
        kvs, _ = await self.client.range(self.keys.id(service_id))
        if not kvs:
            return None
        return unb64(kvs[0].get("value")).decode(), int(kvs[0]["mod_revision"])

    async def _record(self, service_id: str) -> tuple[bytes, dict[str, Any], ServiceInstance] | None:
        found = await self._owner(service_id)
        if found is None:
            return None
        key = self.keys.instance(found[0], service_id)
        kvs, _ = await self.client.range(key)
        return (key, kvs[0], keys.decode(kvs[0])) if kvs else None

    def _check_open(self) -> None:
        if not self._open:
            raise RegistryUnavailable(f"registry is not running (closed or not started; {self.client.where})")

    async def _reap_loop(self, interval: float) -> None:
        while self._open:
            await self._clock.sleep(interval)
            try:
                await self.expire_now()
            except RegistryUnavailable as e:
                log.debug("registry reaper pass skipped: %s", e)
            except Exception:
                log.exception("registry reaper pass failed")
