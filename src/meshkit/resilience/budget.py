"""A retry budget: retries may add at most a fixed fraction to the load on a service.

Retries are how a client survives a failing instance, and how a fleet of clients takes a
struggling service down: when every caller retries every failure three times, an overload
that makes half the calls fail turns into up to three times the load, the service falls
further behind, more calls fail, and the retries multiply again (a retry storm). Capping
attempts per request does not stop this; capping retries against the traffic does.

This is Finagle's `RetryBudget` (Linkerd uses the same defaults): every original request
deposits `percent_can_retry` of a retry, every retry withdraws a whole one, and both expire
after `ttl` seconds. A reserve of `min_retries_per_sec * ttl` retries is always there, so a
client sending little traffic may still retry. With the defaults, over any 10 s a client
makes at most 20% of its requests plus 100 as retries.

Counts are kept as integers in thousandths of a retry in sliced windows: `deposit()` is an
index computation and one addition. A sliced window forgets a whole slice at once, so
deposits and withdrawals are kept apart and rounded opposite ways: deposits are forgotten
up to one slice early, withdrawals are remembered up to one slice late. Sharing one window
let a withdrawal expire up to a slice before `ttl`, which let a client spend its reserve
again early (measured: 1.36x the offered load on a failing upstream, against the 1.2x plus
10/s promised; tests/chaos/test_retry_amplification.py).
"""

from __future__ import annotations

import math

from meshkit.clock import Clock
from meshkit.resilience._window import WindowedSum

_SCALE = 1000  # one retry, in the window's integer units
_SLICES = 100  # per ttl: withdrawals are remembered at most ttl/100 longer than ttl


def _check(name: str, value: object, low: float, high: float, *, low_open: bool = False) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        v = float(value)
        above_low = v > low if low_open else v >= low
        if math.isfinite(v) and above_low and v <= high:
            return v
    bracket = "(" if low_open else "["
    raise ValueError(f"{name}: must be a number in {bracket}{low:g}, {high:g}], got {value!r}")


class RetryBudget:
    __slots__ = (
        "_deposit",
        "_deposits",
        "_reserve",
        "_withdrawals",
        "min_retries_per_sec",
        "percent_can_retry",
        "ttl",
    )

    def __init__(
        self,
        ttl: float = 10.0,
        min_retries_per_sec: float = 10.0,
        percent_can_retry: float = 0.2,
        *,
        clock: Clock,
    ) -> None:
        self.ttl = _check("ttl", ttl, 0.0, 3600.0, low_open=True)
        self.min_retries_per_sec = _check("min_retries_per_sec", min_retries_per_sec, 0.0, 1e9)
        self.percent_can_retry = _check("percent_can_retry", percent_can_retry, 0.0, 1000.0)
        self._deposit = round(self.percent_can_retry * _SCALE)
        self._reserve = round(self.min_retries_per_sec * self.ttl * _SCALE)
        # deposits cover (ttl - slice, ttl]; withdrawals cover [ttl, ttl + slice)
        self._deposits = WindowedSum(self.ttl, clock, slices=_SLICES)
        self._withdrawals = WindowedSum(self.ttl * (_SLICES + 1) / _SLICES, clock, slices=_SLICES + 1)

    def deposit(self) -> None:
        """Count an original request (not a retry): it earns `percent_can_retry` of a retry."""
        self._deposits.add(self._deposit)

    def try_withdraw(self) -> bool:
        """Take one retry if the budget has one; False means: do not retry."""
        if self._deposits.sum() + self._reserve - self._withdrawals.sum() < _SCALE:
            return False
        self._withdrawals.add(_SCALE)
        return True

    def balance(self) -> float:
        """Retries available now (deposits and reserve, minus recent withdrawals)."""
        return (self._deposits.sum() + self._reserve - self._withdrawals.sum()) / _SCALE

    def __repr__(self) -> str:
        return (
            f"RetryBudget(ttl={self.ttl:g}, min_retries_per_sec={self.min_retries_per_sec:g}, "
            f"percent_can_retry={self.percent_can_retry:g}, balance={self.balance():.2f})"
        )
