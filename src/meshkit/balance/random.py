"""Random: pick an endpoint at random, in proportion to its weight.

Weights express capacity (the seed's default is 100 for everyone), so an instance of
weight 200 gets twice the share of one of weight 100, and weight 0 is never picked. With
equal weights this is a uniform choice. Randomness comes from the injected `rng`, so a
seeded `random.Random` makes a test's sequence of picks fixed.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from meshkit.balance.picker import nothing_to_pick
from meshkit.types import Request, ServiceInstance


class WeightedRandom:
    __slots__ = ("rng",)

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def pick(self, endpoints: Sequence[ServiceInstance], request: Request) -> ServiceInstance:
        total = 0
        for inst in endpoints:
            total += inst.weight
        if total <= 0:
            raise nothing_to_pick(request)
        point = self.rng.random() * total
        chosen = endpoints[0]
        for inst in endpoints:
            if inst.weight > 0:
                chosen = inst
                point -= inst.weight
                if point < 0:
                    break
        return chosen
