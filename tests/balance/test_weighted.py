from __future__ import annotations

from collections import Counter

import pytest

from meshkit.balance import SmoothWeighted
from meshkit.errors import NoHealthyInstances
from tests.balance.fleet import fleet, instance, request


def test_nginx_sequence_for_weights_5_1_1() -> None:
    a, b, c = instance("a", weight=5), instance("b", weight=1), instance("c", weight=1)
    picker = SmoothWeighted()
    picks = "".join(picker.pick((a, b, c), request()).id for _ in range(14))
    assert picks == "aabacaa" * 2


def test_each_cycle_honours_the_weights_exactly() -> None:
    endpoints = fleet(3, weights=[300, 200, 100])
    picker = SmoothWeighted()
    counts = Counter(picker.pick(endpoints, request()).id for _ in range(6 * 100))
    assert counts == {"i0": 300, "i1": 200, "i2": 100}


def test_weight_zero_is_never_picked() -> None:
    endpoints = fleet(3, weights=[0, 1, 2])
    picker = SmoothWeighted()
    assert "i0" not in {picker.pick(endpoints, request()).id for _ in range(300)}
    with pytest.raises(NoHealthyInstances):
        picker.pick(fleet(2, weights=[0, 0]), request())


def test_state_for_departed_instances_is_dropped() -> None:
    picker = SmoothWeighted()
    for k in range(100):
        picker.pick((instance(f"gone{k}"),), request())
    picker.pick(fleet(2), request())
    assert len(picker._current) <= 2 * 2 + 16 + 2
