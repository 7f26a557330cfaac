"""Metric history for trend charts: the mesh's counters sampled on an interval into a bounded ring.

Every `interval` seconds (default 10 s) the history reads the cumulative counters meshkit
exports (calls, errors and the latency histogram per service, plus the mesh health score)
and stores what changed since the previous reading: request rate, error rate, and p50, p95
and p99 latency interpolated within histogram buckets the way Prometheus's
`histogram_quantile` does. A counter that went down (a restart) counts from zero, like
`rate()`. At most `max_samples` samples are kept (default 1,000: about 2.8 hours at 10 s),
and only services that had calls in an interval take room in its sample. `window_stats()`
gives each service's traffic over the last `window` seconds (default 60 s), what alerts and
the dashboard's tables read, so a quiet interval does not blank them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry

from meshkit.clock import SYSTEM_CLOCK, Clock

log = logging.getLogger(__name__)

Buckets = tuple[tuple[float, float], ...]  # (upper bound, cumulative count), ascending, +Inf last


@dataclass(frozen=True, slots=True)
class ServiceCounters:
    requests: float
    errors: float
    buckets: Buckets = ()


@dataclass(frozen=True, slots=True)
class Reading:
    """What one look at the mesh returns: cumulative counters per service, and the health score."""

    services: Mapping[str, ServiceCounters]
    health_score: float | None = None


@dataclass(frozen=True, slots=True)
class ServiceStats:
    requests: float
    request_rate: float
    error_rate: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, slots=True)
class Sample:
    at: float  # unix seconds
    services: Mapping[str, ServiceStats]
    health_score: float | None
    success_rate: float | None  # None when no call was made in the interval


def quantile(q: float, buckets: Buckets) -> float | None:
    """Prometheus's histogram_quantile over cumulative buckets; None when they are empty."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if math.isinf(upper):
                return lower
            return lower + (upper - lower) * ((rank - below) / (count - below) if count > below else 1.0)
        lower, below = upper, count
    return lower


def read_counters(registry: CollectorRegistry) -> dict[str, ServiceCounters]:
    """Per-service totals from a MeshMetrics registry (mesh_requests_total, ..._errors_total, histogram)."""
    requests: dict[str, float] = {}
    errors: dict[str, float] = {}
    buckets: dict[str, dict[float, float]] = {}
    for family in registry.collect():
        for s in family.samples:
            service = s.labels.get("service")
            if service is None:
                continue
            if s.name == "mesh_requests_total":
                requests[service] = requests.get(service, 0.0) + s.value
            elif s.name == "mesh_request_errors_total":
                errors[service] = errors.get(service, 0.0) + s.value
            elif s.name == "mesh_request_duration_seconds_bucket":
                per = buckets.setdefault(service, {})
                le = float(s.labels["le"])
                per[le] = per.get(le, 0.0) + s.value
    return {
        name: ServiceCounters(total, errors.get(name, 0.0), tuple(sorted(buckets.get(name, {}).items())))
        for name, total in requests.items()
    }


def _delta(now: float, before: float) -> float:
    return now - before if now >= before else now  # a reset counts from zero


def service_stats(now: ServiceCounters, before: ServiceCounters | None, seconds: float) -> ServiceStats:
    base = before or ServiceCounters(0.0, 0.0, ())
    calls = _delta(now.requests, base.requests)
    failed = min(calls, _delta(now.errors, base.errors))
    old = dict(base.buckets)
    diff = tuple((le, _delta(c, old.get(le, 0.0))) for le, c in now.buckets)
    ms = [None if v is None else round(v * 1000.0, 3) for v in (quantile(q, diff) for q in (0.5, 0.95, 0.99))]
    return ServiceStats(calls, calls / seconds, failed / calls if calls else 0.0, ms[0], ms[1], ms[2])


def _positive(name: str, value: object, *, integer: bool = False) -> None:
    kinds = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value) or value <= 0:
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{name}: must be {kind} > 0, got {value!r}")


class MetricsHistory:
    """Samples `read()` every `interval` seconds into a ring of at most `max_samples` samples."""

    def __init__(
        self,
        read: Callable[[], Awaitable[Reading]],
        *,
        interval: float = 10.0,
        max_samples: int = 1000,
        clock: Clock = SYSTEM_CLOCK,
        window: float = 60.0,
        on_sample: Callable[[Sample], Awaitable[None]] | None = None,
    ) -> None:
        _positive("interval", interval)
        _positive("max_samples", max_samples, integer=True)
        _positive("window", window)
        self.interval = float(interval)
        self.max_samples = max_samples
        self.window = float(window)
        # cumulative readings spanning `window`, so window stats are exact deltas, not merged samples
        self._readings: deque[tuple[float, Reading]] = deque(maxlen=math.ceil(window / interval) + 2)
        self._read = read
        self._clock = clock
        self._on_sample = on_sample
        self._samples: deque[Sample] = deque(maxlen=max_samples)
        self._last: tuple[float, Reading] | None = None
        self._task: asyncio.Task[None] | None = None

    async def sample(self) -> Sample | None:
        """Take one reading; returns the sample it made (None for the first, the baseline)."""
        reading = await self._read()
        mono = self._clock.monotonic()
        last, self._last = self._last, (mono, reading)
        self._readings.append((mono, reading))
        if last is None or mono <= last[0]:
            return None
        seconds = mono - last[0]
        stats = {
            name: service_stats(now, last[1].services.get(name), seconds)
            for name, now in reading.services.items()
        }
        active = {name: s for name, s in stats.items() if s.requests > 0}
        calls = sum(s.requests for s in active.values())
        failed = sum(s.requests * s.error_rate for s in active.values())
        success = 1.0 - failed / calls if calls else None
        sample = Sample(self._clock.time(), active, reading.health_score, success)
        self._samples.append(sample)
        if self._on_sample is not None:
            await self._on_sample(sample)
        return sample

    async def _run(self) -> None:
        while True:
            try:
                await self.sample()
            except Exception as exc:  # a failed read loses one sample, not the history
                log.warning("history: reading metrics failed: %s", exc)
            await self._clock.sleep(self.interval)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="metrics-history")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def __len__(self) -> int:
        return len(self._samples)

    def latest(self) -> Sample | None:
        return self._samples[-1] if self._samples else None

    def window_stats(self) -> tuple[float, dict[str, ServiceStats]]:
        """Each service's traffic over about the last `window` seconds (from the newest reading
        back to the newest one at least `window` older, else the oldest kept): (seconds, stats)."""
        if len(self._readings) < 2:
            return 0.0, {}
        end_at, end = self._readings[-1]
        start_at, start = self._readings[0]
        for at, reading in self._readings:
            if end_at - at >= self.window:
                start_at, start = at, reading
        seconds = end_at - start_at
        stats = {n: service_stats(c, start.services.get(n), seconds) for n, c in end.services.items()}
        return seconds, {n: s for n, s in stats.items() if s.requests > 0}

    def series(self, service: str | None = None, since: float | None = None) -> list[dict[str, Any]]:
        """Points for a chart, oldest first: the mesh's (service None) or one service's.

        A service with no calls in an interval has rate 0 and no latency at that point."""
        if since is not None and (isinstance(since, bool) or not isinstance(since, int | float)):
            raise ValueError(f"since: must be a unix time in seconds or None, got {since!r}")
        points = [s for s in self._samples if since is None or s.at > since]
        if service is None:
            return [self._mesh_point(s) for s in points]
        idle = ServiceStats(0.0, 0.0, 0.0, None, None, None)
        return [{"at": s.at, **s.services.get(service, idle).as_dict()} for s in points]

    @staticmethod
    def _mesh_point(s: Sample) -> dict[str, Any]:
        calls = sum(v.requests for v in s.services.values())
        rate = sum(v.request_rate for v in s.services.values())
        return {
            "at": s.at,
            "health_score": s.health_score,
            "success_rate": s.success_rate,
            "request_rate": rate,
            "error_rate": None if s.success_rate is None or not calls else 1.0 - s.success_rate,
        }
