"""Full-jitter backoff: every delay lies in [0, min(cap, base * 2**attempt)], and it does spread."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshkit.resilience.backoff import backoff_ceiling, full_jitter


@given(
    attempt=st.integers(min_value=0, max_value=5000),
    base=st.floats(min_value=0.0, max_value=100.0, allow_nan=False),
    cap=st.floats(min_value=0.0, max_value=3600.0, allow_nan=False),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_every_delay_is_within_bounds(attempt: int, base: float, cap: float, seed: int) -> None:
    delay = full_jitter(attempt, base=base, cap=cap, rng=random.Random(seed))
    assert 0 <= Fraction(delay) <= min(Fraction(cap), Fraction(base) * 2**attempt)  # exact arithmetic


@given(attempt=st.integers(min_value=0, max_value=200), base=st.floats(min_value=1e-6, max_value=10.0))
def test_default_cap_is_30_seconds(attempt: int, base: float) -> None:
    assert full_jitter(attempt, base=base, rng=random.Random(attempt)) <= 30.0


def test_ceiling_doubles_then_stops_at_the_cap() -> None:
    assert [backoff_ceiling(n, base=0.5, cap=30.0) for n in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert backoff_ceiling(100_000, base=0.05) == 30.0
    assert backoff_ceiling(100_000, base=0.0) == 0.0
    assert backoff_ceiling(1030, base=5e-324) < 1e-10  # tiny base: no premature jump to the cap


def test_delays_spread_over_the_whole_interval() -> None:
    rng = random.Random(7)
    delays = [full_jitter(4, base=1.0, cap=30.0, rng=rng) for _ in range(2000)]
    assert min(delays) < 1.0 and max(delays) > 15.0  # not clustered at the ceiling (16)
    assert 7.0 < sum(delays) / len(delays) < 9.0  # uniform on [0, 16]: mean 8


def test_same_seed_same_delays() -> None:
    first = [full_jitter(n, base=0.1, rng=random.Random(3)) for n in range(5)]
    again = [full_jitter(n, base=0.1, rng=random.Random(3)) for n in range(5)]
    assert first == again


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"attempt": -1}, "attempt"),
        ({"base": -0.1}, "base"),
        ({"cap": -1.0}, "cap"),
        ({"base": float("nan")}, "base"),
    ],
)
def test_bad_arguments_name_the_field(kwargs: dict[str, float], field: str) -> None:
    args: dict[str, float] = {"attempt": 0, "base": 0.1, "cap": 30.0, **kwargs}
    with pytest.raises(ValueError, match=rf"^{field}: must be"):
        full_jitter(int(args["attempt"]), base=args["base"], cap=args["cap"], rng=random.Random(0))
