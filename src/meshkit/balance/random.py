"""Random: pick an endpoint at random, in proportion to its weight.

Weights express capacity (the seed's default is 100 for everyone), so an instance of
weight 200 gets twice the share of one of weight 100, and weight 0 is never picked. With
equal weights this is a uniform choice. Randomness comes from the injected `rng`, so a
seeded `random.Random` makes a test's sequence of picks fixed.
"""

from __future__ import annotations

import random
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from itertools import accumulate
from operator import attrgetter

from meshkit.balance.picker import nothing_to_pick
from meshkit.types import Request, ServiceInstance

_weight = attrgetter("weight")


class WeightedRandom:
    __slots__ = ("rng",)

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def pick(self, endpoints: Sequence[ServiceInstance], request: Request) -> ServiceInstance:
        cumulative = list(accumulate(map(_weight, endpoints)))
        if not cumulative or cumulative[-1] <= 0:
            raise nothing_to_pick(request)
        total = cumulative[-1]
        # bisect_right skips weight-0 entries: their running total equals the one before.
        i = bisect_right(cumulative, self.rng.random() * total)
        if i == len(cumulative):  # float rounding reached the total: the last weighted entry
            i = bisect_left(cumulative, total)
        return endpoints[i]
