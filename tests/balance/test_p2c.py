from __future__ import annotations

import random
from collections import Counter

from meshkit.balance import LoadTracker, P2CPeakEwma
from meshkit.balance.p2c import pick
from meshkit.clock import FakeClock
from tests.balance.fleet import fleet, request


def test_pick_returns_the_cheaper_of_two_distinct_endpoints() -> None:
    endpoints = fleet(2)
    cost = {"i0": 5.0, "i1": 1.0}
    rng = random.Random(1)
    assert {pick(endpoints, cost.__getitem__, rng).id for _ in range(50)} == {"i1"}


def test_the_most_expensive_endpoint_is_never_picked() -> None:
    endpoints = fleet(5)
    cost = {f"i{k}": float(k) for k in range(5)}
    rng = random.Random(2)
    counts = Counter(pick(endpoints, cost.__getitem__, rng).id for _ in range(5000))
    assert "i4" not in counts
    assert counts["i0"] > counts["i1"] > counts["i2"] > counts["i3"] > 0


def test_one_endpoint() -> None:
    assert pick(fleet(1), lambda iid: 1.0, random.Random(0)).id == "i0"


def simulate(
    picker: P2CPeakEwma, load: LoadTracker, clock: FakeClock, latency: dict[str, float]
) -> Counter[str]:
    """Sequential requests, each taking its instance's latency on the fake clock."""
    endpoints = fleet(len(latency))
    counts: Counter[str] = Counter()
    for _ in range(1000):
        inst = picker.pick(endpoints, request())
        started = load.start(inst.id)
        clock.advance(latency[inst.id])
        load.finish(inst.id, started, failed=False)
        counts[inst.id] += 1
    return counts


def test_avoids_a_slow_instance() -> None:
    clock = FakeClock()
    load = LoadTracker(clock=clock)
    latency = {"i0": 0.01, "i1": 0.01, "i2": 0.5, "i3": 0.01}
    counts = simulate(P2CPeakEwma(load, random.Random(11)), load, clock, latency)
    assert counts["i2"] < 30, counts  # a quarter would be 250
    assert min(counts["i0"], counts["i1"], counts["i3"]) > 250


def test_avoids_an_instance_with_many_requests_in_flight() -> None:
    clock = FakeClock()
    load = LoadTracker(clock=clock)
    endpoints = fleet(3)
    for inst in endpoints:  # equal latency history
        load.finish(inst.id, load.start(inst.id) - 0.05, failed=False)
    for _ in range(20):
        load.start("i1")
    picker = P2CPeakEwma(load, random.Random(5))
    counts = Counter(picker.pick(endpoints, request()).id for _ in range(600))
    assert "i1" not in counts
