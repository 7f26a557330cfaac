from __future__ import annotations

from collections import Counter

import pytest

from meshkit.balance import RoundRobin
from meshkit.errors import NoHealthyInstances
from tests.balance.fleet import fleet, request


def test_takes_each_in_turn() -> None:
    endpoints = fleet(3)
    rr = RoundRobin()
    assert [rr.pick(endpoints, request()).id for _ in range(7)] == ["i0", "i1", "i2", "i0", "i1", "i2", "i0"]


def test_even_distribution_survives_membership_changes() -> None:
    rr = RoundRobin()
    full, fewer = fleet(4), fleet(4)[:3]
    counts = Counter(rr.pick(full, request()).id for _ in range(400))
    assert set(counts.values()) == {100}
    counts = Counter(rr.pick(fewer, request()).id for _ in range(300))
    assert counts == {"i0": 100, "i1": 100, "i2": 100}


def test_no_endpoints_is_a_clear_error() -> None:
    with pytest.raises(NoHealthyInstances):
        RoundRobin().pick((), request())
