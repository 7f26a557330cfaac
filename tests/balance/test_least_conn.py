from __future__ import annotations

from collections import Counter

from meshkit.balance import LeastConnections, LoadTracker
from meshkit.clock import FakeClock
from tests.balance.fleet import fleet, request


def test_picks_the_fewest_in_flight() -> None:
    load = LoadTracker(clock=FakeClock())
    endpoints = fleet(3)
    for iid, busy in (("i0", 3), ("i1", 1), ("i2", 2)):
        for _ in range(busy):
            load.start(iid)
    picker = LeastConnections(load)
    assert {picker.pick(endpoints, request()).id for _ in range(6)} == {"i1"}


def test_requests_that_stay_in_flight_spread_evenly() -> None:
    load = LoadTracker(clock=FakeClock())
    endpoints = fleet(4)
    picker = LeastConnections(load)
    for _ in range(40):
        load.start(picker.pick(endpoints, request()).id)
    assert [load.in_flight(e.id) for e in endpoints] == [10, 10, 10, 10]


def test_ties_rotate_instead_of_piling_on_the_first() -> None:
    picker = LeastConnections(LoadTracker(clock=FakeClock()))
    counts = Counter(picker.pick(fleet(3), request()).id for _ in range(30))
    assert counts == {"i0": 10, "i1": 10, "i2": 10}
