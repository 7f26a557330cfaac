"""DiscoveryLayer: candidates from a resolver's memory when it has them, else from `resolve()`."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from meshkit.discovery import DiscoveryLayer, StaticResolver
from meshkit.errors import NoHealthyInstances
from meshkit.transport.mock import MockTransport
from meshkit.types import Request, Response, ServiceInstance

A = ServiceInstance("a-1", "a", "127.0.0.1", 9001)


class AskingResolver:
    """A resolver with no memory: every answer is a `resolve()` (counted)."""

    def __init__(self, instances: Sequence[ServiceInstance]) -> None:
        self.instances = tuple(instances)
        self.asked = 0

    async def resolve(self, service: str) -> Sequence[ServiceInstance]:
        self.asked += 1
        return self.instances if service == "a" else ()


class RememberingResolver(AskingResolver):
    """Knows service "a" from memory; anything else it must ask for."""

    def known(self, service: str) -> Sequence[ServiceInstance] | None:
        return self.instances if service == "a" else None


def layer(resolver: object) -> tuple[DiscoveryLayer, MockTransport]:
    transport = MockTransport(lambda request: Response(200))
    return DiscoveryLayer(transport, resolver=resolver), transport  # type: ignore[arg-type]


async def test_known_candidates_skip_resolve() -> None:
    resolver = RememberingResolver([A])
    service, transport = layer(resolver)
    response = await service(Request("GET", "/", service="a"))
    assert response.status == 200
    assert resolver.asked == 0
    assert transport.requests[0].candidates == (A,)


async def test_unknown_service_is_resolved_then_refused() -> None:
    resolver = RememberingResolver([A])
    service, transport = layer(resolver)
    with pytest.raises(NoHealthyInstances, match="no instance is registered"):
        await service(Request("GET", "/", service="b"))
    assert resolver.asked == 1
    assert transport.requests == []


async def test_resolver_without_memory_is_asked_every_call() -> None:
    resolver = AskingResolver([A])
    service, transport = layer(resolver)
    for _ in range(3):
        await service(Request("GET", "/", service="a"))
    assert resolver.asked == 3
    assert [r.candidates for r in transport.requests] == [(A,)] * 3


async def test_static_resolver_known_service_with_no_instances_fails_fast() -> None:
    resolver = StaticResolver({"a": []})
    assert resolver.known("a") == ()
    assert resolver.known("missing") is None
    service, _ = layer(resolver)
    with pytest.raises(NoHealthyInstances):
        await service(Request("GET", "/", service="a"))


@pytest.mark.parametrize("name", ["users\n", "users\r", "\nusers", "Users", "a" * 65, ""])
def test_service_names_are_matched_whole(name: str) -> None:
    """A trailing newline is refused too (a `$` anchor would let it through)."""
    with pytest.raises(ValueError, match="service_name"):
        StaticResolver({name: []})
    assert "a" * 64 in StaticResolver({"a" * 64: []})._services
