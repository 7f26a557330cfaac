"""Smooth weighted round robin, as nginx does it (ngx_http_upstream_get_peer, 2012).

On each pick every endpoint's current weight grows by its weight; the endpoint with the
largest current weight is picked and its current weight drops by the total. Over one cycle
each endpoint is picked exactly `weight` times, and the picks are interleaved rather than
bunched: weights 5, 1, 1 give a a b a c a a, not a a a a a b c. Weight 0 is never picked.

Current weights are kept per instance id, so they survive the membership changing as
`eligible()` skips and restores instances; ids that stay away are dropped now and then.
"""

from __future__ import annotations

from collections.abc import Sequence

from meshkit.balance.picker import nothing_to_pick
from meshkit.types import Request, ServiceInstance


class SmoothWeighted:
    __slots__ = ("_current",)

    def __init__(self) -> None:
        self._current: dict[str, int] = {}

    def pick(self, endpoints: Sequence[ServiceInstance], request: Request) -> ServiceInstance:
        current = self._current
        if len(current) > 2 * len(endpoints) + 16:
            self._prune(endpoints)
        get = current.get
        total = 0
        best: ServiceInstance | None = None
        best_weight = 0
        for inst in endpoints:
            weight = inst.weight
            if weight <= 0:
                continue
            iid = inst.service_id
            value = get(iid, 0) + weight
            current[iid] = value
            total += weight
            if best is None or value > best_weight:
                best, best_weight = inst, value
        if best is None:
            raise nothing_to_pick(request)
        current[best.service_id] = best_weight - total
        return best

    def _prune(self, endpoints: Sequence[ServiceInstance]) -> None:
        keep = {inst.service_id for inst in endpoints}
        self._current = {iid: w for iid, w in self._current.items() if iid in keep}
