"""Load per instance: requests in flight and a peak-sensitive latency average.

`PeakEwma` is Finagle's peak EWMA (finagle-core `PeakEwma`, used by its default
`P2CPeakEwma` balancer, and by Linkerd): a sample above the current value replaces it at
once, so a latency spike is seen immediately; otherwise the value decays toward the
sample with weight exp(-elapsed / decay_time), the elapsed time since the last sample
(an EWMA over unevenly spaced samples). Reading the cost first decays toward 0, so an
instance that was slow and then left alone is probed again later.

`LoadTracker.cost(id)` is Finagle's cost, `ewma * (in_flight + 1)`: the latency a new
request should expect there. An instance with no latency sample yet costs 0 when idle (so
a new instance is tried soon) and a large penalty plus its in-flight count when busy (so
it is not flooded before its first answer), as in Finagle.

A failed attempt records at least `failure_latency` seconds: an instance that fails fast
(connection refused in 1 ms) must not look like the fastest one and attract traffic.

`LoadLayer` sits beneath the balancer and wraps each attempt on `request.instance`.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from meshkit.clock import SYSTEM_CLOCK, Clock
from meshkit.service import Service
from meshkit.types import Request, Response

PENALTY = 1e6  # seconds: the cost of an instance that has requests in flight but no sample yet
_exp = math.exp


class PeakEwma:
    """An exponentially weighted moving average that jumps up to peaks (seconds)."""

    __slots__ = ("decay_time", "stamp", "value")

    def __init__(self, decay_time: float = 10.0, now: float = 0.0) -> None:
        if isinstance(decay_time, bool) or not isinstance(decay_time, int | float) or decay_time <= 0:
            raise ValueError(f"decay_time: must be a number of seconds > 0, got {decay_time!r}")
        self.decay_time = float(decay_time)
        self.stamp = now
        self.value = 0.0

    def observe(self, sample: float, now: float) -> float:
        """Fold in `sample` taken at `now`; returns the new value."""
        elapsed = now - self.stamp
        if elapsed < 0.0:
            elapsed = 0.0
        if sample > self.value:
            self.value = sample
        else:
            w = _exp(-elapsed / self.decay_time)
            self.value = self.value * w + sample * (1.0 - w)
        self.stamp = now
        return self.value


class _Load:
    __slots__ = ("ewma", "pending", "sampled")

    def __init__(self, decay_time: float, now: float) -> None:
        self.ewma = PeakEwma(decay_time, now)
        self.pending = 0
        self.sampled = False


class LoadTracker:
    """In-flight counts and peak-EWMA latency per instance id, on an injected clock."""

    __slots__ = ("_clock", "_loads", "_monotonic", "decay_time", "failure_latency")

    def __init__(
        self, clock: Clock = SYSTEM_CLOCK, decay_time: float = 10.0, failure_latency: float = 1.0
    ) -> None:
        PeakEwma(decay_time)  # validates decay_time
        if isinstance(failure_latency, bool) or not isinstance(failure_latency, int | float):
            raise ValueError(f"failure_latency: must be a number of seconds >= 0, got {failure_latency!r}")
        if failure_latency < 0:
            raise ValueError(f"failure_latency: must be a number of seconds >= 0, got {failure_latency!r}")
        self._clock = clock
        self._monotonic = clock.monotonic  # bound once: read twice per request
        self._loads: dict[str, _Load] = {}
        self.decay_time = float(decay_time)
        self.failure_latency = float(failure_latency)

    def _load(self, instance_id: str) -> _Load:
        load = self._loads.get(instance_id)
        if load is None:
            load = self._loads[instance_id] = _Load(self.decay_time, self._monotonic())
        return load

    def start(self, instance_id: str) -> float:
        """Count a request as in flight; returns its start time for `finish`."""
        self._load(instance_id).pending += 1
        return self._monotonic()

    def finish(self, instance_id: str, started: float, failed: bool) -> None:
        """The request begun at `started` ended; record its latency."""
        self._finish(self._load(instance_id), started, failed)

    def _finish(self, load: _Load, started: float, failed: bool) -> None:
        if load.pending > 0:
            load.pending -= 1
        now = self._monotonic()
        rtt = now - started
        if failed and rtt < self.failure_latency:
            rtt = self.failure_latency
        load.ewma.observe(rtt if rtt > 0.0 else 0.0, now)
        load.sampled = True

    def in_flight(self, instance_id: str) -> int:
        load = self._loads.get(instance_id)
        return 0 if load is None else load.pending

    def latency(self, instance_id: str) -> float:
        """The peak-EWMA latency in seconds (0.0 before the first sample), without decaying it."""
        load = self._loads.get(instance_id)
        return 0.0 if load is None else load.ewma.value

    def cost(self, instance_id: str) -> float:
        """Expected latency of one more request: ewma * (in_flight + 1) (Finagle's P2CPeakEwma)."""
        load = self._loads.get(instance_id)
        if load is None:
            return 0.0
        if not load.sampled:
            return PENALTY + load.pending if load.pending else 0.0
        return load.ewma.observe(0.0, self._monotonic()) * (load.pending + 1)

    def forget(self, instance_id: str) -> None:
        """Drop what is known about an instance that left the service."""
        self._loads.pop(instance_id, None)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """`{id: {"in_flight": n, "latency": seconds, "cost": c}}` for topology and metrics."""
        return {
            iid: {"in_flight": load.pending, "latency": load.ewma.value, "cost": self.cost(iid)}
            for iid, load in list(self._loads.items())
        }


class LoadLayer:
    """Tracks each attempt on `request.instance` and mirrors the in-flight count onto it.

    It holds the instance's record for the whole attempt (one dict lookup, not four); an
    attempt still in flight when its instance is forgotten is not counted again.
    """

    __slots__ = ("inner", "tracker")

    def __init__(self, inner: Service, *, tracker: LoadTracker) -> None:
        self.inner = inner
        self.tracker = tracker

    async def __call__(self, request: Request) -> Response:
        instance = request.instance
        if instance is None:
            return await self.inner(request)
        tracker = self.tracker
        load = tracker._loads.get(instance.service_id) or tracker._load(instance.service_id)
        load.pending += 1
        instance.connections = load.pending
        started = tracker._monotonic()
        failed = True
        try:
            response = await self.inner(request)
            failed = response.status >= 500
            return response
        except asyncio.CancelledError:
            failed = False  # the caller gave up; the instance did nothing wrong
            raise
        finally:
            tracker._finish(load, started, failed)
            instance.connections = load.pending
