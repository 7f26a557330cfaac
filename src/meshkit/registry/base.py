"""The registry contract: who exists, where they listen, how healthy they are.

Every backend (the embedded SQLite store, etcd, Consul) and the local cache in front of
them speak this one protocol, so the client and the control plane never know which one
they hold. Changes are numbered by one global revision, as etcd numbers its keyspace;
`watch` yields whole snapshots rather than deltas, so a slow watcher that missed three
changes simply gets the latest state (Kubernetes informers resync the same way).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from meshkit.types import ServiceInstance, ServiceState

# Called with an instance's address before it is registered; raises ValueError to refuse it
# (the SSRF guard plugs in here to refuse link-local and cloud metadata addresses).
AddressPolicy = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A service's instances at one revision; `stale` with `age` seconds when served from cache."""

    service: str
    instances: tuple[ServiceInstance, ...]
    revision: int
    stale: bool = False
    age: float = 0.0

    @property
    def healthy(self) -> tuple[ServiceInstance, ...]:
        return tuple(i for i in self.instances if i.state == ServiceState.HEALTHY)


class UnknownInstance(KeyError):
    """No instance with this id is registered."""

    def __init__(self, service_id: str) -> None:
        self.service_id = service_id
        super().__init__(service_id)

    def __str__(self) -> str:
        return f"service_id: no instance {self.service_id!r} is registered"


@runtime_checkable
class Registry(Protocol):
    """What every registry backend offers. Writes return only once they are durable."""

    async def start(self) -> None: ...
    async def close(self) -> None: ...

    async def register(
        self, instance: ServiceInstance, *, address_policy: AddressPolicy | None = None
    ) -> ServiceInstance: ...

    async def deregister(self, service_id: str) -> bool: ...
    async def heartbeat(self, service_id: str) -> None: ...

    async def set_state(
        self, service_id: str, state: ServiceState, reason: str = ""
    ) -> ServiceInstance | None: ...

    async def get(self, service_id: str) -> ServiceInstance | None: ...
    async def instances(self, service_name: str) -> Snapshot: ...
    async def services(self) -> dict[str, int]: ...
    async def all_instances(self) -> list[ServiceInstance]: ...

    def watch(self, service_name: str | None = None) -> AsyncIterator[Snapshot]: ...
