"""Blocking-query bookkeeping: wait strings, the client timeout, index resets, the poll budget."""

from __future__ import annotations

import asyncio

import pytest

from meshkit.clock import FakeClock
from meshkit.registry.consul.blocking import PollBudget, client_timeout, next_index, parse_wait


@pytest.mark.parametrize(("text", "seconds"), [("500ms", 0.5), ("30s", 30.0), ("5m", 300.0), ("10m", 600.0)])
def test_parse_wait(text: str, seconds: float) -> None:
    assert parse_wait(text) == seconds


@pytest.mark.parametrize("bad", ["", "30", "11m", "0s", "-1s", "1h", "s", 30])
def test_parse_wait_refuses_what_consul_would_not_take(bad: object) -> None:
    with pytest.raises(ValueError, match=r"^wait: "):
        parse_wait(bad)  # type: ignore[arg-type]


def test_client_timeout_outlasts_consul_jitter() -> None:
    for wait in (1.0, 30.0, 600.0):
        assert client_timeout(wait, 0.001) > wait * 17 / 16


def test_index_resets_to_zero_when_it_goes_backwards() -> None:
    assert next_index(100, 7) == 0


def test_index_is_at_least_one_so_the_next_request_blocks() -> None:
    assert next_index(0, 0) == 1
    assert next_index(0, -3) == 0  # lower than before: the backwards rule comes first
    assert next_index(5, 5) == 5
    assert next_index(5, 9) == 9


async def test_poll_budget_allows_a_burst_of_two_then_one_per_interval() -> None:
    clock = FakeClock()
    budget = PollBudget(clock, every=10.0)
    await budget.take()
    await budget.take()  # the burst: no waiting
    third = asyncio.ensure_future(budget.take())
    await asyncio.sleep(0)
    assert not third.done()
    await clock.run_for(9.9, step=0.1)
    assert not third.done()
    await clock.run_for(0.2, step=0.1)
    assert third.done()


def test_poll_budget_rejects_negative_interval() -> None:
    with pytest.raises(ValueError, match=r"^rate_limit: "):
        PollBudget(FakeClock(), every=-1.0)
