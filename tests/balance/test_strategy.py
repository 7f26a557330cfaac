from __future__ import annotations

import random

import pytest

from meshkit.balance import (
    DEFAULT_STRATEGY,
    LeastConnections,
    LoadTracker,
    P2CPeakEwma,
    RingHash,
    RoundRobin,
    SmoothWeighted,
    WeightedRandom,
    make_picker,
)
from meshkit.types import LoadBalancerStrategy


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("round_robin", RoundRobin),
        ("least_connections", LeastConnections),
        ("weighted", SmoothWeighted),
        ("random", WeightedRandom),
        ("ip_hash", RingHash),
        ("p2c_ewma", P2CPeakEwma),
        (LoadBalancerStrategy.IP_HASH, RingHash),
    ],
)
def test_each_strategy_by_name(name: str, kind: type) -> None:
    assert isinstance(make_picker(name, load=LoadTracker()), kind)


def test_default_is_p2c_ewma() -> None:
    assert DEFAULT_STRATEGY == "p2c_ewma"
    assert isinstance(make_picker(load=LoadTracker()), P2CPeakEwma)


def test_options_reach_the_picker() -> None:
    load, rng = LoadTracker(), random.Random(1)
    p2c = make_picker("p2c_ewma", load=load, rng=rng)
    assert isinstance(p2c, P2CPeakEwma) and p2c.load is load and p2c.rng is rng
    ring = make_picker("ip_hash", load=load, hash_header="X-User")
    assert isinstance(ring, RingHash) and ring.hash_header == "X-User"


def test_unknown_strategy_names_the_field_and_the_allowed_values() -> None:
    with pytest.raises(ValueError) as err:
        make_picker("fastest", load=LoadTracker())
    message = str(err.value)
    assert message.startswith("strategy:") and "'fastest'" in message
    for allowed in LoadBalancerStrategy:
        assert allowed.value in message
