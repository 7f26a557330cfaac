"""The balancer layer: choose the instance for this attempt, then pass the request on.

It narrows `request.candidates` (filled by discovery) with `eligible()` (health, weight,
gates from breakers and outlier detection, instances a retry already tried), asks the
picker for one, and sets `request.instance` for the layers beneath it (load tracking,
the breaker, the transport). It sits beneath retry, so every retry is balanced afresh.
Gates that count what they refuse (`refusing`, see `select`) are left out of the check
while that count is 0: with every breaker closed and nothing ejected, a pick asks no gate.
"""

from __future__ import annotations

from collections.abc import Coroutine, Sequence
from typing import Any, cast

from meshkit.balance.picker import Picker
from meshkit.balance.select import CountedGate, Gate, eligible, is_counted
from meshkit.service import Service
from meshkit.types import Request, Response


class BalancerLayer:
    __slots__ = ("_counted", "_uncounted", "gates", "inner", "picker")

    def __init__(self, inner: Service, *, picker: Picker, gates: Sequence[Gate] = ()) -> None:
        self.inner = inner
        self.picker = picker
        self.gates = tuple(gates)
        self._counted = tuple(cast(CountedGate, g) for g in self.gates if is_counted(g))
        self._uncounted = tuple(g for g in self.gates if not is_counted(g))

    def __call__(self, request: Request) -> Coroutine[Any, Any, Response]:
        """Pick, then hand back the inner service's coroutine: with nothing to do after the
        call, the layer needs no coroutine of its own (~1,000 instructions per attempt)."""
        gates = self._uncounted  # a counted gate refusing nobody need not see each candidate
        for gate in self._counted:
            if gate.refusing:
                gates = self.gates
                break
        endpoints = eligible(request.service, request.candidates, gates, request.excluded)
        request.instance = self.picker.pick(endpoints, request)
        return self.inner(request)
