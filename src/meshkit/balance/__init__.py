"""Load balancing: choose which instance serves each attempt.

Each strategy is a small picker (`pick(endpoints, request)`) over the endpoints
`eligible()` keeps, adapted to the stack by `BalancerLayer`; `LoadLayer`, beneath it,
feeds the `LoadTracker` that least-connections and P2C read. `make_picker(name, ...)`
selects a strategy by name.
"""

from meshkit.balance.hashing import HashRing, RingHash, hash64
from meshkit.balance.layer import BalancerLayer
from meshkit.balance.least_conn import LeastConnections
from meshkit.balance.load import LoadLayer, LoadTracker, PeakEwma
from meshkit.balance.p2c import P2CPeakEwma
from meshkit.balance.picker import Picker
from meshkit.balance.random import WeightedRandom
from meshkit.balance.round_robin import RoundRobin
from meshkit.balance.select import Gate, eligible, gate_reason
from meshkit.balance.strategy import DEFAULT_STRATEGY, make_picker
from meshkit.balance.weighted import SmoothWeighted

__all__ = [
    "DEFAULT_STRATEGY",
    "BalancerLayer",
    "Gate",
    "HashRing",
    "LeastConnections",
    "LoadLayer",
    "LoadTracker",
    "P2CPeakEwma",
    "PeakEwma",
    "Picker",
    "RingHash",
    "RoundRobin",
    "SmoothWeighted",
    "WeightedRandom",
    "eligible",
    "gate_reason",
    "hash64",
    "make_picker",
]
