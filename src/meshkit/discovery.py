"""Discovery: turning a service name into the instances that may serve it.

A `Resolver` answers `resolve(service)` with the instances the registry knows (their
states included; the balancer decides which to use). `StaticResolver` is a fixed list,
so the stack runs before any registry exists; the registry's cache is another resolver.
`DiscoveryLayer` puts the answer on the request as `candidates`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol, runtime_checkable

from meshkit.errors import NoHealthyInstances
from meshkit.service import Service
from meshkit.types import Request, Response, ServiceInstance, default_instance_id, validate_service_name


@runtime_checkable
class Resolver(Protocol):
    async def resolve(self, service: str) -> Sequence[ServiceInstance]: ...


class StaticResolver:
    """A fixed map of service name to instances."""

    def __init__(self, services: Mapping[str, Iterable[ServiceInstance]] | None = None) -> None:
        self._services: dict[str, tuple[ServiceInstance, ...]] = {}
        for name, instances in (services or {}).items():
            self.set(name, instances)

    @classmethod
    def from_addresses(cls, services: Mapping[str, Iterable[tuple[str, int]]]) -> StaticResolver:
        """`{"users": [("127.0.0.1", 8001), ...]}` with default ids and weights."""

        def make(name: str, host: str, port: int) -> ServiceInstance:
            return ServiceInstance(default_instance_id(name, host, port), name, host, port)

        return cls({name: [make(name, h, p) for h, p in addrs] for name, addrs in services.items()})

    def set(self, service: str, instances: Iterable[ServiceInstance]) -> None:
        validate_service_name(service)
        items = tuple(instances)
        for inst in items:
            if inst.service_name != service:
                owner = inst.service_name
                raise ValueError(f"service_name: instance {inst.id!r} belongs to {owner!r}, not {service!r}")
        self._services[service] = items

    async def resolve(self, service: str) -> Sequence[ServiceInstance]:
        return self._services.get(service, ())


class DiscoveryLayer:
    """Resolves `request.service` into `request.candidates`; an unknown service fails fast."""

    __slots__ = ("inner", "resolver")

    def __init__(self, inner: Service, *, resolver: Resolver) -> None:
        self.inner = inner
        self.resolver = resolver

    async def __call__(self, request: Request) -> Response:
        candidates = await self.resolver.resolve(request.service)
        if not candidates:
            raise NoHealthyInstances(request.service, "no instance is registered")
        request.candidates = candidates
        return await self.inner(request)
