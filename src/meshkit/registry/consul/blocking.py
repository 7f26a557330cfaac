"""Consul blocking queries: the index bookkeeping and the timeouts, kept pure.

A blocking query (`?index=N&wait=30s`) hangs until the data behind it changes past index
N or `wait` passes; Consul adds up to wait/16 of jitter, so a client's own timeout must be
longer than wait x 17/16 or it cuts off healthy long polls. Consul's "Blocking Queries"
page lists what a client must get right, and this module does each: reset the index to 0
when it goes backwards (a restored snapshot), use at least 1 so the next request really
blocks, and rate-limit the loop with a token bucket of burst 2 so a churning result
degrades into polling instead of a busy loop.
"""

from __future__ import annotations

import re

from meshkit.clock import Clock

MAX_WAIT = 600.0  # Consul caps wait at 10 minutes
_WAIT_RE = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m)$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0}


def parse_wait(wait: str) -> float:
    """Seconds in a Consul wait string ("500ms", "30s", "5m"); ValueError naming `wait`."""
    match = _WAIT_RE.match(wait) if isinstance(wait, str) else None
    seconds = float(match.group(1)) * _UNITS[match.group(2)] if match else 0.0
    if not match or not 0 < seconds <= MAX_WAIT:
        raise ValueError(
            f"wait: must be a duration like '500ms', '30s' or '5m', > 0 and <= 10m, got {wait!r}"
        )
    return seconds


def client_timeout(wait: float, request_timeout: float) -> float:
    """The longest a blocking request may take: wait plus Consul's wait/16 jitter, plus slack."""
    return wait * 17 / 16 + request_timeout


def next_index(previous: int, returned: int) -> int:
    """The index for the next request, given the one just returned (Consul's two rules)."""
    if returned < previous:
        return 0  # went backwards: start the loop over with a non-blocking read
    return max(returned, 1)  # 0 or less would not block: a busy loop


class PollBudget:
    """A token bucket (burst 2): quick successive deliveries pass, churn is slowed to one per `every`."""

    __slots__ = ("_burst", "_clock", "_every", "_last", "_tokens")

    def __init__(self, clock: Clock, every: float, burst: int = 2) -> None:
        if isinstance(every, bool) or not isinstance(every, int | float) or every < 0:
            raise ValueError(f"rate_limit: must be a number of seconds >= 0, got {every!r}")
        self._clock = clock
        self._every = every
        self._tokens = float(burst)
        self._burst = burst
        self._last = clock.monotonic()

    async def take(self) -> None:
        if self._every == 0:
            return
        now = self._clock.monotonic()
        self._tokens = min(float(self._burst), self._tokens + (now - self._last) / self._every)
        self._last = now
        if self._tokens < 1.0:
            await self._clock.sleep((1.0 - self._tokens) * self._every)
            self._tokens = 1.0
            self._last = self._clock.monotonic()
        self._tokens -= 1.0
