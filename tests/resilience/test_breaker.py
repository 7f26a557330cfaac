"""The breaker state machine on a FakeClock: trips, fails fast, probes, recovers, reports."""

from __future__ import annotations

import pytest

from meshkit.clock import FakeClock
from meshkit.events import BreakerTransition
from meshkit.outcome import Outcome
from meshkit.resilience.breaker import BreakerPolicy, BreakerState, CircuitBreaker

FAIL = Outcome.SERVER_ERROR
OK = Outcome.SUCCESS


def make(**policy: object) -> tuple[CircuitBreaker, FakeClock, list[BreakerTransition]]:
    clock = FakeClock()
    seen: list[BreakerTransition] = []
    breaker = CircuitBreaker("svc-a", BreakerPolicy(**policy), clock=clock, on_transition=seen.append)  # type: ignore[arg-type]
    return breaker, clock, seen


def fail(breaker: CircuitBreaker, n: int, outcome: Outcome = FAIL) -> None:
    for _ in range(n):
        permit = breaker.try_acquire()
        assert permit is not None
        breaker.record(outcome, permit)


def open_breaker(breaker: CircuitBreaker) -> None:
    fail(breaker, breaker.policy.failure_threshold)
    assert breaker.state is BreakerState.OPEN


@pytest.mark.parametrize("threshold", [1, 3, 5])
def test_trips_after_exactly_threshold_consecutive_failures(threshold: int) -> None:
    breaker, _, _ = make(failure_threshold=threshold)
    fail(breaker, threshold - 1)
    assert breaker.state is BreakerState.CLOSED
    fail(breaker, 1)
    assert breaker.state is BreakerState.OPEN


@pytest.mark.parametrize(
    "outcome", [Outcome.CONNECT_ERROR, Outcome.TIMEOUT, Outcome.RESET, Outcome.SERVER_ERROR]
)
def test_every_failed_outcome_counts(outcome: Outcome) -> None:
    breaker, _, _ = make(failure_threshold=2)
    fail(breaker, 2, outcome)
    assert breaker.state is BreakerState.OPEN


def test_a_success_resets_the_consecutive_count() -> None:
    breaker, _, _ = make(failure_threshold=3)
    fail(breaker, 2)
    fail(breaker, 1, OK)  # a 4xx classifies as success and breaks the run
    fail(breaker, 2)
    assert breaker.state is BreakerState.CLOSED
    fail(breaker, 1)
    assert breaker.state is BreakerState.OPEN


def test_failure_rate_over_the_window_trips() -> None:
    breaker, _, seen = make(
        failure_threshold=100, failure_rate_threshold=0.5, window=10.0, minimum_requests=10
    )
    for _ in range(4):  # 4 failures, 5 successes, interleaved: never 100 in a row
        fail(breaker, 1)
        fail(breaker, 1, OK)
    fail(breaker, 1, OK)
    assert breaker.state is BreakerState.CLOSED  # 4/9 and under minimum_requests
    fail(breaker, 1)  # 5/10 = 50%
    assert breaker.state is BreakerState.OPEN
    assert "failure rate" in seen[-1].reason


def test_failure_rate_forgets_calls_older_than_the_window() -> None:
    breaker, clock, _ = make(
        failure_threshold=100, failure_rate_threshold=0.5, window=10.0, minimum_requests=4
    )
    fail(breaker, 1)
    fail(breaker, 1)
    fail(breaker, 1, OK)
    clock.advance(20.0)  # those three are gone
    fail(breaker, 1, OK)
    fail(breaker, 1, OK)
    fail(breaker, 1, OK)
    fail(breaker, 1)  # 1/4 in the window
    assert breaker.state is BreakerState.CLOSED


def test_open_fails_fast_until_recovery_then_half_opens_lazily() -> None:
    breaker, clock, _ = make(failure_threshold=2, recovery_timeout=60.0)
    open_breaker(breaker)
    assert breaker.try_acquire() is None
    assert not breaker.allows()
    assert breaker.retry_after() == pytest.approx(60.0)
    clock.advance(59.9)
    assert breaker.try_acquire() is None
    assert breaker.retry_after() == pytest.approx(0.1)
    clock.advance(0.1)
    assert breaker.allows()  # allows() changes nothing; reading .state moves it
    assert breaker.state is BreakerState.HALF_OPEN


def test_half_open_admits_only_the_bounded_probes() -> None:
    breaker, clock, _ = make(failure_threshold=1, recovery_timeout=5.0, half_open_max_probes=2)
    open_breaker(breaker)
    clock.advance(5.0)
    first, second = breaker.try_acquire(), breaker.try_acquire()
    assert first is not None and first.probe
    assert second is not None and second.probe
    assert breaker.try_acquire() is None  # the rest fail fast
    assert not breaker.allows()
    breaker.record(OK, first)  # one success of two: still half-open, a slot is free again
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allows()
    breaker.record(OK, second)
    assert breaker.state is BreakerState.CLOSED


def test_probe_failure_reopens_for_another_recovery_timeout() -> None:
    breaker, clock, _ = make(failure_threshold=1, recovery_timeout=5.0)
    open_breaker(breaker)
    clock.advance(5.0)
    probe = breaker.try_acquire()
    assert probe is not None
    breaker.record(Outcome.TIMEOUT, probe)
    assert breaker.state is BreakerState.OPEN
    assert breaker.retry_after() == pytest.approx(5.0)


def test_released_probe_frees_its_slot() -> None:
    breaker, clock, _ = make(failure_threshold=1, recovery_timeout=5.0)
    open_breaker(breaker)
    clock.advance(5.0)
    probe = breaker.try_acquire()
    assert probe is not None and breaker.try_acquire() is None
    breaker.release(probe)  # the probe was cancelled: nothing learnt, slot back
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.try_acquire() is not None


def test_a_stale_probe_cannot_close_the_next_half_open_period() -> None:
    breaker, clock, _ = make(failure_threshold=1, recovery_timeout=5.0, half_open_max_probes=2)
    open_breaker(breaker)
    clock.advance(5.0)
    slow, quick = breaker.try_acquire(), breaker.try_acquire()
    assert slow is not None and quick is not None
    breaker.record(FAIL, quick)  # reopen
    clock.advance(5.0)
    assert breaker.state is BreakerState.HALF_OPEN
    fresh = breaker.try_acquire()
    assert fresh is not None
    breaker.record(OK, slow)  # from the previous period: ignored
    breaker.release(slow)
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.try_acquire() is not None  # slow did not free or fill a slot: one left of two
    assert breaker.try_acquire() is None


def test_late_ordinary_results_do_not_move_an_open_or_half_open_breaker() -> None:
    breaker, clock, _ = make(failure_threshold=1, recovery_timeout=5.0)
    early = breaker.try_acquire()
    assert early is not None
    open_breaker(breaker)
    breaker.record(OK, early)  # admitted while closed, finished while open
    assert breaker.state is BreakerState.OPEN
    clock.advance(5.0)
    breaker.record(OK, early)
    assert breaker.state is BreakerState.HALF_OPEN


def test_every_transition_is_an_event() -> None:
    breaker, clock, seen = make(failure_threshold=2, recovery_timeout=5.0)
    open_breaker(breaker)
    clock.advance(5.0)
    probe = breaker.try_acquire()
    assert probe is not None
    breaker.record(OK, probe)
    assert [(e.old, e.new) for e in seen] == [
        ("closed", "open"),
        ("open", "half-open"),
        ("half-open", "closed"),
    ]
    assert all(e.instance_id == "svc-a" for e in seen)
    assert seen[0].reason == "2 consecutive failures"
    assert seen[1].at == clock.time()


def test_state_strings_are_what_the_rest_api_reports() -> None:
    assert [s.value for s in BreakerState] == ["closed", "open", "half-open"]


def test_configure_applies_the_new_threshold() -> None:
    breaker, _, _ = make(failure_threshold=5)
    fail(breaker, 2)
    breaker.configure(BreakerPolicy(failure_threshold=3))
    fail(breaker, 1)
    assert breaker.state is BreakerState.OPEN


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("failure_threshold", 0),
        ("failure_threshold", -1),
        ("failure_threshold", 2.5),
        ("failure_threshold", True),
        ("recovery_timeout", 0),
        ("recovery_timeout", -1.0),
        ("recovery_timeout", float("inf")),
        ("half_open_max_probes", 0),
        ("failure_rate_threshold", 0.0),
        ("failure_rate_threshold", 1.5),
        ("window", 0),
        ("minimum_requests", 0),
    ],
)
def test_bad_policy_is_a_value_error_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"^{field}: must be"):
        BreakerPolicy(**{field: value})  # type: ignore[arg-type]
