"""Discovery: turning a service name into the instances that may serve it.

A `Resolver` answers `resolve(service)` with the instances the registry knows (their
states included; the balancer decides which to use). `StaticResolver` is a fixed list,
so the stack runs before any registry exists; the registry's cache is another resolver.
`DiscoveryLayer` puts the answer on the request as `candidates`. A resolver that can
answer from memory also offers `known(service)` (the instances, or None when it would
have to ask); the layer then needs no coroutine of its own (measured: one coroutine frame
is ~3,000 instructions per call, a tenth of the whole stack).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

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

    def known(self, service: str) -> Sequence[ServiceInstance] | None:
        return self._services.get(service)


Known = Callable[[str], "Sequence[ServiceInstance] | None"]


class DiscoveryLayer:
    """Resolves `request.service` into `request.candidates`; an unknown service fails fast."""

    __slots__ = ("_known", "inner", "resolver")

    def __init__(self, inner: Service, *, resolver: Resolver) -> None:
        self.inner = inner
        self.resolver = resolver
        known = getattr(resolver, "known", None)
        self._known: Known | None = known if callable(known) else None

    def __call__(self, request: Request) -> Coroutine[Any, Any, Response]:
        """Candidates from memory when the resolver has them: hand back the inner coroutine."""
        if self._known is not None:
            candidates = self._known(request.service)
            if candidates:
                request.candidates = candidates
                return self.inner(request)
        return self._resolve(request)

    async def _resolve(self, request: Request) -> Response:
        candidates = await self.resolver.resolve(request.service)
        if not candidates:
            raise NoHealthyInstances(request.service, "no instance is registered")
        request.candidates = candidates
        return await self.inner(request)
