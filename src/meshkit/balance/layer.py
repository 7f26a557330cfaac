"""The balancer layer: choose the instance for this attempt, then pass the request on.

It narrows `request.candidates` (filled by discovery) with `eligible()` (health, weight,
gates from breakers and outlier detection, instances a retry already tried), asks the
picker for one, and sets `request.instance` for the layers beneath it (load tracking,
the breaker, the transport). It sits beneath retry, so every retry is balanced afresh.
"""

from __future__ import annotations

from collections.abc import Sequence

from meshkit.balance.picker import Picker
from meshkit.balance.select import Gate, eligible
from meshkit.service import Service
from meshkit.types import Request, Response


class BalancerLayer:
    __slots__ = ("gates", "inner", "picker")

    def __init__(self, inner: Service, *, picker: Picker, gates: Sequence[Gate] = ()) -> None:
        self.inner = inner
        self.picker = picker
        self.gates = tuple(gates)

    async def __call__(self, request: Request) -> Response:
        endpoints = eligible(request.service, request.candidates, self.gates, request.excluded)
        request.instance = self.picker.pick(endpoints, request)
        return await self.inner(request)
