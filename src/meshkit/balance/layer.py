"""The balancer layer: choose the instance for this attempt, then pass the request on.

It narrows `request.candidates` (filled by discovery) with `eligible()` (health, weight,
gates from breakers and outlier detection, instances a retry already tried), asks the
picker for one, and sets `request.instance` for the layers beneath it (load tracking,
the breaker, the transport). It sits beneath retry, so every retry is balanced afresh.
Gates that count what they refuse (`refusing`, see `select`) are left out of the check
while that count is 0: with every breaker closed and nothing ejected, a pick asks no gate.
Why this instance is written to `request.context["balancer.reason"]` (the attempt span's
`meshkit.balancer.reason`): the strategy, and when the choice was narrowed, how many of the
candidates were eligible and whether the pick is a degraded fallback.
"""

from __future__ import annotations

from collections.abc import Coroutine, Sequence
from typing import Any, cast

from meshkit.balance.picker import Picker
from meshkit.balance.select import CountedGate, Gate, eligible, is_counted
from meshkit.service import Service
from meshkit.types import Request, Response, ServiceState

REASON_KEY = "balancer.reason"  # request.context: why the balancer chose request.instance
_DEGRADED = ServiceState.DEGRADED


class BalancerLayer:
    __slots__ = ("_counted", "_uncounted", "gates", "inner", "picker", "reason")

    def __init__(
        self, inner: Service, *, picker: Picker, gates: Sequence[Gate] = (), reason: str | None = None
    ) -> None:
        self.inner = inner
        self.picker = picker
        self.reason = reason or type(picker).__name__  # the strategy's name, e.g. "p2c_ewma"
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
        candidates = request.candidates
        endpoints = eligible(request.service, candidates, gates, request.excluded)
        request.instance = chosen = self.picker.pick(endpoints, request)
        if endpoints is candidates:  # every candidate was eligible: the strategy alone decided
            request.context[REASON_KEY] = self.reason
        else:
            fallback = ", degraded fallback" if chosen.state is _DEGRADED else ""
            reason = f"{self.reason}, {len(endpoints)} of {len(candidates)} eligible{fallback}"
            request.context[REASON_KEY] = reason
        return self.inner(request)
