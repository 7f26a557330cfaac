"""RemoteRegistry: the `Registry` protocol spoken over the control plane's REST API.

A sidecar or a service in another process reaches the registry only through the plane:
`register`, `deregister` and `heartbeat` map onto their endpoints, `instances` onto
`/discover`, `services` and `all_instances` onto `/topology`. `watch` polls (every
`poll_interval`) and yields only when the answer changed, the way Consul's non-blocking
clients follow a catalog; put a `CachedRegistry` in front so the data path reads from
memory and keeps serving when the plane is away. A plane that cannot be reached, or that
answers 503, raises `RegistryUnavailable`; the instance's health state belongs to the
plane's checker, so `set_state` is refused.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from meshkit.clock import SYSTEM_CLOCK, Clock
from meshkit.errors import RegistryUnavailable
from meshkit.registry.base import AddressPolicy, Snapshot, UnknownInstance
from meshkit.remote import ControlPlaneClient, ControlPlaneError, ControlPlaneUnreachable
from meshkit.types import HealthCheck, ServiceInstance, ServiceState, validate_service_name

_STATES = {s.value: s for s in ServiceState}


def split_address(address: str) -> tuple[str, int]:
    """`host:port` (IPv6 hosts bracketed) into its parts."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"address: must be host:port, got {address!r}")
    return host.removeprefix("[").removesuffix("]"), int(port)


def instance_from_wire(service_name: str, item: dict[str, Any]) -> ServiceInstance:
    """One `/discover` or `/topology` instance entry as a `ServiceInstance`."""
    host, port = split_address(str(item["address"]))
    return ServiceInstance(
        str(item["id"]),
        service_name,
        host,
        port,
        tags=list(item.get("tags") or []),
        metadata=dict(item.get("metadata") or {}),
        state=_STATES.get(str(item.get("state")), ServiceState.UNKNOWN),
        weight=int(item.get("weight", 100)),
        zone=str(item.get("zone") or ""),
        version=str(item.get("version") or ""),
        connections=int(item.get("connections") or 0),
    )


def _signature(instances: tuple[ServiceInstance, ...]) -> tuple[Any, ...]:
    return tuple(
        (i.service_id, i.endpoint, i.state, tuple(i.tags), tuple(sorted(i.metadata.items())))
        for i in instances
    )


class RemoteRegistry:
    """A `Registry` backed by a `ControlPlaneClient`; see the module docstring."""

    def __init__(
        self,
        client: ControlPlaneClient,
        *,
        poll_interval: float = 1.0,
        use_cache: bool = True,
        owns_client: bool = False,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if (
            isinstance(poll_interval, bool)
            or not isinstance(poll_interval, int | float)
            or poll_interval <= 0
        ):
            raise ValueError(f"poll_interval: must be a number of seconds > 0, got {poll_interval!r}")
        self.client = client
        self._poll_interval = poll_interval
        self._use_cache = use_cache
        self._owns_client = owns_client
        self._clock = clock
        self._revisions = itertools.count(1)  # local: the REST API carries no revision

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        if self._owns_client:
            await self.client.close()

    async def _call(self, coro: Any) -> Any:
        try:
            return await coro
        except ControlPlaneUnreachable as exc:
            raise RegistryUnavailable(str(exc)) from None
        except ControlPlaneError as exc:
            if exc.status == 503:
                raise RegistryUnavailable(str(exc)) from None
            raise

    # -- writes

    async def register(
        self, instance: ServiceInstance, *, address_policy: AddressPolicy | None = None
    ) -> ServiceInstance:
        if address_policy is not None:
            address_policy(instance.address)
        reply = await self._call(
            self.client.register(
                instance.service_name,
                instance.address,
                instance.port,
                tags=instance.tags,
                metadata=instance.metadata,
                weight=instance.weight,
                zone=instance.zone or None,
                version=instance.version or None,
                check=instance.check,
                ttl=instance.ttl,
                service_id=instance.service_id,
            )
        )
        return replace(instance, service_id=str(reply["service_id"]))

    async def deregister(self, service_id: str) -> bool:
        try:
            await self._call(self.client.deregister(service_id))
        except ControlPlaneError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def heartbeat(self, service_id: str) -> None:
        try:
            await self._call(self.client.heartbeat(service_id))
        except ControlPlaneError as exc:
            if exc.status == 404:
                raise UnknownInstance(service_id) from None
            raise

    async def set_state(
        self, service_id: str, state: ServiceState, reason: str = ""
    ) -> ServiceInstance | None:
        raise NotImplementedError("set_state: instance health belongs to the control plane's health checker")

    # -- reads

    async def instances(self, service_name: str) -> Snapshot:
        validate_service_name(service_name)
        reply = await self._call(self.client.discover(service_name, use_cache=self._use_cache))
        items = tuple(instance_from_wire(service_name, item) for item in reply.get("instances", ()))
        return Snapshot(
            service_name,
            items,
            next(self._revisions),
            stale=bool(reply.get("stale", False)),
            age=float(reply.get("age") or 0.0),
        )

    async def _topology_instances(self) -> list[ServiceInstance]:
        reply = await self._call(self.client.topology())
        return [
            instance_from_wire(name, item)
            for name, entry in (reply.get("services") or {}).items()
            for item in entry.get("instances", ())
        ]

    async def services(self) -> dict[str, int]:
        reply = await self._call(self.client.topology())
        return {name: int(entry.get("total", 0)) for name, entry in (reply.get("services") or {}).items()}

    async def all_instances(self) -> list[ServiceInstance]:
        """Every instance as `/topology` lists it (tags and metadata come only from `instances`)."""
        return await self._topology_instances()

    async def get(self, service_id: str) -> ServiceInstance | None:
        try:
            item = await self._call(self.client.instance(service_id))
        except ControlPlaneError as exc:
            if exc.status == 404:
                return None
            raise
        found = instance_from_wire(str(item["service_name"]), item)
        check = item.get("check") if item.get("check_source") == "instance" else None
        if check:
            found.check = HealthCheck(**check)
        found.ttl = item.get("ttl")
        return found

    async def _read(self, service_name: str | None) -> tuple[ServiceInstance, ...]:
        if service_name is None:
            return tuple(await self._topology_instances())
        return (await self.instances(service_name)).instances

    async def watch(self, service_name: str | None = None) -> AsyncIterator[Snapshot]:
        """The current snapshot, then one each time a poll finds a different answer."""
        if service_name is not None:
            validate_service_name(service_name)
        last: tuple[Any, ...] | None = None
        while True:
            items = await self._read(service_name)
            signature = _signature(items)
            if signature != last:
                last = signature
                yield Snapshot(service_name or "", items, next(self._revisions))
            await self._clock.sleep(self._poll_interval)
