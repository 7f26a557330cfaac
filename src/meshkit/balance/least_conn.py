"""Least connections: pick the endpoint with the fewest requests in flight.

In-flight counts come from the `LoadTracker` that `LoadLayer` feeds. Ties (the usual case
when traffic is light and everything is at 0) are broken in rotation, as nginx's
`least_conn` falls back to round robin, so an idle service still spreads its calls rather
than sending every one to the first instance. Weights are not considered: "least" means
fewest in flight, as the seed's strategy did.
"""

from __future__ import annotations

from collections.abc import Sequence

from meshkit.balance.load import LoadTracker
from meshkit.balance.picker import nothing_to_pick
from meshkit.types import Request, ServiceInstance


class LeastConnections:
    __slots__ = ("_next", "load")

    def __init__(self, load: LoadTracker) -> None:
        self.load = load
        self._next = 0

    def pick(self, endpoints: Sequence[ServiceInstance], request: Request) -> ServiceInstance:
        n = len(endpoints)
        if not n:
            raise nothing_to_pick(request)
        start = self._next % n
        self._next = start + 1
        in_flight = self.load.in_flight
        best = endpoints[start]
        fewest = in_flight(best.service_id)
        for k in range(1, n):
            if not fewest:
                break
            inst = endpoints[(start + k) % n]
            count = in_flight(inst.service_id)
            if count < fewest:
                best, fewest = inst, count
        return best
