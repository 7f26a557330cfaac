"""Round robin: each pick takes the next endpoint in turn.

The counter is shared across membership changes, so when an instance leaves or is skipped
the rotation simply continues over the endpoints that remain. Weights are ignored here;
`weighted` honours them.
"""

from __future__ import annotations

from collections.abc import Sequence

from meshkit.balance.picker import nothing_to_pick
from meshkit.types import Request, ServiceInstance


class RoundRobin:
    __slots__ = ("_next",)

    def __init__(self, start: int = 0) -> None:
        self._next = start

    def pick(self, endpoints: Sequence[ServiceInstance], request: Request) -> ServiceInstance:
        n = len(endpoints)
        if not n:
            raise nothing_to_pick(request)
        i = self._next
        self._next = i + 1
        return endpoints[i % n]
