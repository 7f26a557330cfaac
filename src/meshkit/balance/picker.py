"""The protocol every balancing strategy implements: choose one endpoint for one request.

A picker is the small, pure half of a balancer (Finagle assembles balancers the same way,
from a selection rule and a load metric). It is handed the endpoints `eligible()` kept,
never empty, and the request, which only the hashing picker reads (for its key). It keeps
whatever state its rule needs (a counter, smooth-WRR weights, a hash ring) and does no I/O.
`BalancerLayer` adapts a picker to the stack.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from meshkit.errors import NoHealthyInstances
from meshkit.types import Request, ServiceInstance


@runtime_checkable
class Picker(Protocol):
    def pick(self, endpoints: Sequence[ServiceInstance], request: Request) -> ServiceInstance: ...


def nothing_to_pick(request: Request) -> NoHealthyInstances:
    """The error a picker raises when called with no endpoints (eligible() never returns none)."""
    return NoHealthyInstances(request.service, "no endpoint was offered to the balancer")
