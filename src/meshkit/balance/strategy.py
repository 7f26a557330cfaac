"""Balancing strategies by name: the seed's five and `p2c_ewma`, meshkit's default.

`make_picker("least_connections", load=tracker)` returns a fresh picker; an unknown name
raises ValueError naming the field (`strategy`) and the allowed values.
"""

from __future__ import annotations

import random

from meshkit.balance.hashing import RingHash
from meshkit.balance.least_conn import LeastConnections
from meshkit.balance.load import LoadTracker
from meshkit.balance.p2c import P2CPeakEwma
from meshkit.balance.picker import Picker
from meshkit.balance.random import WeightedRandom
from meshkit.balance.round_robin import RoundRobin
from meshkit.balance.weighted import SmoothWeighted
from meshkit.types import LoadBalancerStrategy

DEFAULT_STRATEGY = LoadBalancerStrategy.P2C_EWMA


def make_picker(
    strategy: str | LoadBalancerStrategy = DEFAULT_STRATEGY,
    *,
    load: LoadTracker,
    rng: random.Random | None = None,
    hash_header: str | None = None,
) -> Picker:
    """A new picker for `strategy`; `rng` defaults to a system-seeded `random.Random()`."""
    chosen = LoadBalancerStrategy.parse(strategy)
    rng = rng if rng is not None else random.Random()
    if chosen is LoadBalancerStrategy.ROUND_ROBIN:
        return RoundRobin()
    if chosen is LoadBalancerStrategy.LEAST_CONNECTIONS:
        return LeastConnections(load)
    if chosen is LoadBalancerStrategy.WEIGHTED:
        return SmoothWeighted()
    if chosen is LoadBalancerStrategy.RANDOM:
        return WeightedRandom(rng)
    if chosen is LoadBalancerStrategy.IP_HASH:
        return RingHash(hash_header)
    return P2CPeakEwma(load, rng)
