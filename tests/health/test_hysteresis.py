"""Hysteresis: N failures to go down, M passes to come up, and flapping changes state at most once."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from meshkit.health import Hysteresis
from meshkit.types import HealthCheck, ServiceState

CHECK = HealthCheck(unhealthy_threshold=3, healthy_threshold=2)


def feed(h: Hysteresis, results: list[bool]) -> list[tuple[int, ServiceState]]:
    """Return (index, new state) for every change."""
    changes = []
    for i, ok in enumerate(results):
        new = h.observe(ok)
        if new is not None:
            changes.append((i, new))
    return changes


def test_unknown_takes_the_first_verdict() -> None:
    assert feed(Hysteresis(CHECK), [True]) == [(0, ServiceState.HEALTHY)]
    assert feed(Hysteresis(CHECK), [False]) == [(0, ServiceState.UNHEALTHY)]


def test_thresholds_in_both_directions() -> None:
    h = Hysteresis(CHECK, ServiceState.HEALTHY)
    assert feed(h, [False, False]) == []
    assert h.observe(False) is ServiceState.UNHEALTHY
    assert h.observe(True) is None
    assert h.observe(True) is ServiceState.HEALTHY


def test_a_pass_resets_the_failure_run() -> None:
    h = Hysteresis(CHECK, ServiceState.HEALTHY)
    assert feed(h, [False, False, True, False, False, True]) == []
    assert h.state is ServiceState.HEALTHY


def test_alternating_pass_fail_changes_state_at_most_once() -> None:
    flapping = [i % 2 == 0 for i in range(200)]
    for start in ServiceState:
        for results in (flapping, [not r for r in flapping]):
            changes = feed(Hysteresis(CHECK, start), results)
            assert len(changes) <= 1, (start, changes)
            if changes:
                assert changes[0][0] == 0 and start is ServiceState.UNKNOWN


def test_degraded_recovers_like_unhealthy_and_fails_like_healthy() -> None:
    h = Hysteresis(CHECK, ServiceState.DEGRADED)
    assert feed(h, [True, True]) == [(1, ServiceState.HEALTHY)]
    h = Hysteresis(CHECK, ServiceState.DEGRADED)
    assert feed(h, [False, False, False]) == [(2, ServiceState.UNHEALTHY)]


def test_force_sets_state_and_clears_runs() -> None:
    h = Hysteresis(CHECK, ServiceState.HEALTHY)
    feed(h, [False, False])
    assert h.force(ServiceState.DEGRADED) is ServiceState.DEGRADED
    assert h.force(ServiceState.DEGRADED) is None
    assert h.observe(False) is None  # the earlier two failures no longer count


@given(
    st.lists(st.booleans(), max_size=300),
    st.integers(1, 6),
    st.integers(1, 6),
)
def test_every_later_change_follows_a_full_window(results: list[bool], down: int, up: int) -> None:
    h = Hysteresis(HealthCheck(unhealthy_threshold=down, healthy_threshold=up))
    changes = feed(h, results)
    for n, (i, state) in enumerate(changes):
        if n == 0:
            assert i == 0  # from UNKNOWN, the first result decides
            continue
        window = down if state is ServiceState.UNHEALTHY else up
        run = results[i - window + 1 : i + 1]
        assert len(run) == window and all(r == (state is ServiceState.HEALTHY) for r in run)
        assert i - changes[n - 1][0] >= window  # at most one change per hysteresis window
