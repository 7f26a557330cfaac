"""The retry budget's arithmetic on a FakeClock: 20% of requests plus 10/s, over 10 s."""

from __future__ import annotations

import pytest

from meshkit.clock import FakeClock
from meshkit.resilience.budget import RetryBudget


def drain(budget: RetryBudget, limit: int = 100_000) -> int:
    n = 0
    while n < limit and budget.try_withdraw():
        n += 1
    return n


def test_reserve_alone_allows_min_retries_per_sec_times_ttl() -> None:
    budget = RetryBudget(clock=FakeClock())
    assert drain(budget) == 100  # 10/s over 10 s, no requests at all


def test_deposits_add_twenty_percent_of_requests() -> None:
    budget = RetryBudget(clock=FakeClock())
    for _ in range(1000):
        budget.deposit()
    assert budget.balance() == pytest.approx(300.0)
    assert drain(budget) == 300  # 100 reserve + 20% of 1000


def test_percent_only_budget_is_exactly_the_fraction() -> None:
    budget = RetryBudget(min_retries_per_sec=0.0, percent_can_retry=0.2, clock=FakeClock())
    for _ in range(4):
        budget.deposit()
    assert not budget.try_withdraw()  # 0.8 of a retry is not a retry
    budget.deposit()
    assert budget.try_withdraw()
    assert not budget.try_withdraw()


def test_withdrawals_and_deposits_expire_after_ttl() -> None:
    clock = FakeClock()
    budget = RetryBudget(clock=clock)
    for _ in range(500):
        budget.deposit()
    assert drain(budget) == 200
    clock.advance(5.0)
    assert drain(budget) == 0  # still within the 10 s window
    clock.advance(5.5)  # everything above has expired: back to the reserve
    assert budget.balance() == pytest.approx(100.0)
    assert drain(budget) == 100


def test_sliding_window_releases_old_withdrawals_gradually() -> None:
    clock = FakeClock(start=0.0)
    budget = RetryBudget(ttl=10.0, min_retries_per_sec=1.0, percent_can_retry=0.0, clock=clock)
    assert drain(budget) == 10
    clock.advance(4.0)
    assert drain(budget) == 0
    clock.advance(6.5)  # the first ten expire; nothing taken at t=4 to expire
    assert drain(budget) == 10


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("ttl", 0),
        ("ttl", -1.0),
        ("min_retries_per_sec", -1),
        ("percent_can_retry", -0.1),
        ("percent_can_retry", 1001),
    ],
)
def test_bad_arguments_name_the_field(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=rf"^{field}: must be"):
        RetryBudget(clock=FakeClock(), **{field: value})
