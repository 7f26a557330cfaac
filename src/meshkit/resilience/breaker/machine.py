"""A circuit breaker for one instance: a small state machine fed by classified outcomes.

closed -> open after `failure_threshold` consecutive failures, or when the failure rate
over the last `window` seconds reaches `failure_rate_threshold` (with at least
`minimum_requests` calls seen); open -> half-open once `recovery_timeout` has passed (read
lazily, no timer task); half-open admits at most `half_open_max_probes` concurrent probes
and fails the rest fast; `half_open_max_probes` successful probes in a row close it, one
failed probe opens it again. This follows Envoy's and resilience4j's breakers; the
default of one probe is pybreaker's and Hystrix's single trial call. Every transition is
a `BreakerTransition` event. Written by hand because pybreaker never trips when it wraps
an `async def` (the seed's breaker could never open).

The whole machine is synchronous: between `try_acquire()` and `record()` the caller may
await anything, and asyncio runs one task at a time, so no lock is needed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from meshkit.clock import Clock
from meshkit.events import BreakerTransition
from meshkit.outcome import Outcome
from meshkit.resilience._window import OutcomeWindow


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


def _check_int(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name}: must be an integer >= {low}, got {value!r}")


def _check_positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < float("inf"):
        raise ValueError(f"{name}: must be a finite number of seconds > 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    failure_threshold: int = 5  # consecutive failures that open the circuit
    recovery_timeout: float = 60.0  # seconds open before probes are admitted
    half_open_max_probes: int = 1  # concurrent probes in half-open; this many successes close it
    failure_rate_threshold: float | None = None  # e.g. 0.5 opens at 50% failures in `window`
    window: float = 10.0  # seconds of history for the failure rate
    minimum_requests: int = 20  # calls in `window` before the rate may open the circuit

    def __post_init__(self) -> None:
        _check_int("failure_threshold", self.failure_threshold, 1)
        _check_positive("recovery_timeout", self.recovery_timeout)
        _check_int("half_open_max_probes", self.half_open_max_probes, 1)
        rate = self.failure_rate_threshold
        if rate is not None and (
            isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate <= 1
        ):
            raise ValueError(f"failure_rate_threshold: must be None or a fraction in (0, 1], got {rate!r}")
        _check_positive("window", self.window)
        _check_int("minimum_requests", self.minimum_requests, 1)


# Module-level aliases: reading a member through its Enum class (`BreakerState.CLOSED`) goes
# through EnumType.__getattr__'s slow attribute hook, about 1,000 instructions on CPython 3.11;
# the hot path reads these globals instead (`outcome is not _SUCCESS` is `outcome.failed`).
_CLOSED = BreakerState.CLOSED
_OPEN = BreakerState.OPEN
_HALF_OPEN = BreakerState.HALF_OPEN
_SUCCESS = Outcome.SUCCESS


class Permit:
    """What `try_acquire()` hands out; give it back to `record()` or `release()`.

    Ordinary calls share one permit (no allocation); a half-open probe gets its own,
    stamped with the half-open period it belongs to, so a probe that outlives its
    period (the breaker reopened meanwhile) cannot close or free a slot of the next.
    """

    __slots__ = ("generation", "probe")

    def __init__(self, probe: bool, generation: int) -> None:
        self.probe = probe
        self.generation = generation


ORDINARY = Permit(False, 0)

TransitionHook = Callable[[BreakerTransition], None]


class CircuitBreaker:
    __slots__ = (
        "_consecutive",
        "_generation",
        "_in_flight",
        "_on_transition",
        "_open_until",
        "_state",
        "_successes",
        "_window",
        "clock",
        "instance_id",
        "policy",
    )

    def __init__(
        self,
        instance_id: str,
        policy: BreakerPolicy | None = None,
        *,
        clock: Clock,
        on_transition: TransitionHook | None = None,
    ) -> None:
        self.instance_id = instance_id
        self.policy = policy or BreakerPolicy()
        self.clock = clock
        self._on_transition = on_transition
        self._state = _CLOSED
        self._consecutive = 0  # consecutive failures while closed
        self._open_until = 0.0
        self._generation = 0  # bumped on every transition
        self._in_flight = 0  # probes admitted in this half-open period
        self._successes = 0  # successful probes in this half-open period
        self._window = self._new_window()

    def _new_window(self) -> OutcomeWindow | None:
        p = self.policy
        return None if p.failure_rate_threshold is None else OutcomeWindow(p.window, self.clock)

    # -- reading ---------------------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        """The current state; an open breaker whose recovery time has passed turns half-open."""
        if self._state is _OPEN and self.clock.monotonic() >= self._open_until:
            self._transition(_HALF_OPEN, "recovery timeout elapsed")
        return self._state

    def allows(self) -> bool:
        """Would a call be admitted now? Changes nothing: usable as a balancer's gate."""
        state = self._state
        if state is _CLOSED:
            return True
        if state is _OPEN:
            return self.clock.monotonic() >= self._open_until
        return self._in_flight < self.policy.half_open_max_probes

    def retry_after(self) -> float:
        """Seconds until an open breaker admits a probe (0 when not open)."""
        if self._state is not _OPEN:
            return 0.0
        return max(0.0, self._open_until - self.clock.monotonic())

    # -- calls -----------------------------------------------------------------------------

    def try_acquire(self) -> Permit | None:
        """Admit a call (a permit, always truthy) or refuse it (None); takes a probe slot in half-open."""
        if self._state is _CLOSED:
            return ORDINARY
        state = self.state
        if state is _OPEN or self._in_flight >= self.policy.half_open_max_probes:
            return None
        self._in_flight += 1
        return Permit(True, self._generation)

    def record(self, outcome: Outcome, permit: Permit = ORDINARY) -> None:
        """Feed the outcome of an admitted call into the state machine."""
        if permit.probe:
            if not self._owns(permit):
                return
            self._in_flight -= 1
            if outcome is not _SUCCESS:
                self._open(f"probe failed: {outcome.value}")
            else:
                self._successes += 1
                if self._successes >= self.policy.half_open_max_probes:
                    self._transition(_CLOSED, f"{self._successes} probe(s) succeeded")
            return
        if self._state is not _CLOSED:
            return  # a call admitted before the circuit opened says nothing about recovery
        window = self._window
        if outcome is not _SUCCESS:
            self._consecutive += 1
            if self._consecutive >= self.policy.failure_threshold:
                self._open(f"{self._consecutive} consecutive failures")
            elif window is not None:
                window.add(True)
                self._check_rate(window)
        else:
            self._consecutive = 0
            if window is not None:
                window.add(False)

    def release(self, permit: Permit) -> None:
        """Give back a permit without an outcome (the call was cancelled): frees a probe slot."""
        if permit.probe and self._owns(permit):
            self._in_flight -= 1

    def configure(self, policy: BreakerPolicy) -> None:
        """Apply a new policy; counts so far are kept, an open circuit keeps its reopen time."""
        old, self.policy = self.policy, policy
        if (old.failure_rate_threshold is None) != (policy.failure_rate_threshold is None) or (
            old.window != policy.window
        ):
            self._window = self._new_window()

    # -- transitions -----------------------------------------------------------------------

    def _owns(self, permit: Permit) -> bool:
        return self._state is _HALF_OPEN and permit.generation == self._generation

    def _check_rate(self, window: OutcomeWindow) -> None:
        p = self.policy
        total, failures = window.counts()
        if p.failure_rate_threshold is not None and total >= p.minimum_requests:
            rate = failures / total
            if rate >= p.failure_rate_threshold:
                self._open(f"failure rate {rate:.0%} over {total} calls in {p.window:g}s")

    def _open(self, reason: str) -> None:
        self._open_until = self.clock.monotonic() + self.policy.recovery_timeout
        self._transition(_OPEN, reason)

    def _transition(self, new: BreakerState, reason: str) -> None:
        old = self._state
        self._state = new
        self._generation += 1
        self._in_flight = 0
        self._successes = 0
        self._consecutive = 0
        if new is _CLOSED and self._window is not None:
            self._window.clear()
        hook = self._on_transition
        if hook is not None:
            hook(BreakerTransition(self.instance_id, old.value, new.value, reason, at=self.clock.time()))

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.instance_id!r}, {self._state.value})"
