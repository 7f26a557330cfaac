from __future__ import annotations

import random
from collections import Counter

from meshkit.balance import WeightedRandom
from tests.balance.fleet import fleet, request


def test_uniform_with_equal_weights() -> None:
    picker = WeightedRandom(random.Random(42))
    counts = Counter(picker.pick(fleet(4), request()).id for _ in range(8000))
    assert all(1800 <= counts[f"i{k}"] <= 2200 for k in range(4)), counts


def test_share_follows_weight_and_zero_is_never_picked() -> None:
    picker = WeightedRandom(random.Random(7))
    counts = Counter(picker.pick(fleet(3, weights=[300, 100, 0]), request()).id for _ in range(8000))
    assert "i2" not in counts
    assert 5700 <= counts["i0"] <= 6300, counts


def test_same_seed_same_picks() -> None:
    def picks(seed: int) -> list[str]:
        picker = WeightedRandom(random.Random(seed))
        return [picker.pick(fleet(5), request()).id for _ in range(50)]

    assert picks(3) == picks(3)
    assert picks(3) != picks(4)


class AtTheTop(random.Random):
    """As if `random() * total` had been rounded up to `total` itself."""

    def random(self) -> float:
        return 1.0


def test_a_draw_rounded_up_to_the_total_still_lands_on_a_weighted_instance() -> None:
    endpoints = fleet(3, weights=[3, 5, 0])
    assert WeightedRandom(AtTheTop()).pick(endpoints, request()).id == "i1"
