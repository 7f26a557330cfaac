"""Power of two choices: sample two endpoints at random and take the less loaded one.

Mitzenmacher ("The Power of Two Choices in Randomized Load Balancing", 2001) showed that
choosing the better of two random bins cuts the maximum load from O(log n / log log n) to
O(log log n), while, unlike always taking the global best, many clients acting on stale
load do not all pile onto the same instance. Finagle's and Linkerd's default balancer pairs
it with the peak-EWMA cost of `LoadTracker` (latency x (in flight + 1)); this is meshkit's
default strategy too.

`pick(endpoints, cost, rng)` is the rule alone; `P2CPeakEwma` feeds it the tracker's cost.
Weights are not used by this rule beyond `eligible()` dropping weight 0.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from meshkit.balance.load import LoadTracker
from meshkit.balance.picker import nothing_to_pick
from meshkit.types import Request, ServiceInstance


def pick(
    endpoints: Sequence[ServiceInstance], cost: Callable[[str], float], rng: random.Random
) -> ServiceInstance:
    """The cheaper of two distinct endpoints chosen uniformly at random (`cost` takes an id)."""
    n = len(endpoints)
    if n == 1:
        return endpoints[0]
    i = int(rng.random() * n)
    j = int(rng.random() * (n - 1))
    if j >= i:
        j += 1
    a, b = endpoints[i], endpoints[j]
    return b if cost(b.service_id) < cost(a.service_id) else a


class P2CPeakEwma:
    __slots__ = ("load", "rng")

    def __init__(self, load: LoadTracker, rng: random.Random) -> None:
        self.load = load
        self.rng = rng

    def pick(self, endpoints: Sequence[ServiceInstance], request: Request) -> ServiceInstance:
        if not endpoints:
            raise nothing_to_pick(request)
        return pick(endpoints, self.load.cost, self.rng)
