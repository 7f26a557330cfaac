"""What the dashboard watches between page loads: metric history and the alerts it fires.

`MeshMonitor` joins `MetricsHistory` (sampled every 10 s by default) and the alert rules.
Alerts are evaluated after every sample and on every read, over the plane's public shapes
(topology, health) and each service's traffic over the last `window` seconds (60 s), and an `AlertTracker` keeps
when each began. It needs only plain callables, so it runs against a `ControlPlane`
(`MeshMonitor.for_plane(plane)`) or against anything else that answers the same shapes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from meshkit.clock import SYSTEM_CLOCK, Clock
from meshkit.plane.alerts import Alert, AlertRules, AlertTracker, evaluate
from meshkit.plane.history import MetricsHistory, Reading, Sample, ServiceCounters, read_counters

JsonSource = Callable[[], Awaitable[dict[str, Any]]]


class MeshMonitor:
    def __init__(
        self,
        *,
        topology: JsonSource,
        health: JsonSource,
        counters: Callable[[], Mapping[str, ServiceCounters]],
        rules: AlertRules | None = None,
        interval: float = 10.0,
        max_samples: int = 1000,
        window: float = 60.0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.rules = rules if rules is not None else AlertRules()
        self.tracker = AlertTracker()
        self._topology = topology
        self._health = health
        self._counters = counters
        self._clock = clock
        self._lock = asyncio.Lock()
        self.history = MetricsHistory(
            self._read,
            interval=interval,
            max_samples=max_samples,
            window=window,
            clock=clock,
            on_sample=self._sampled,
        )

    @classmethod
    def for_plane(cls, plane: Any, **options: Any) -> MeshMonitor:
        """Watch a `ControlPlane` through its public reads: topology(), health() and its metrics."""
        return cls(
            topology=plane.topology,
            health=plane.health,
            counters=lambda: read_counters(plane.metrics.registry),
            **options,
        )

    async def _read(self) -> Reading:
        health = await self._health()
        score = health.get("health_score")
        return Reading(self._counters(), float(score) if score is not None else None)

    async def _sampled(self, sample: Sample) -> None:
        await self.alerts()

    def service_stats(self) -> dict[str, dict[str, Any]]:
        """Each service's traffic over the history's window: rates, error rate, latency percentiles."""
        return {n: s.as_dict() for n, s in self.history.window_stats()[1].items()}

    def mesh_stats(self) -> dict[str, Any]:
        """The mesh's traffic over the same window: seconds covered, request rate, success rate."""
        seconds, stats = self.history.window_stats()
        calls = sum(s.requests for s in stats.values())
        failed = sum(s.requests * s.error_rate for s in stats.values())
        return {
            "seconds": seconds,
            "request_rate": calls / seconds if seconds else 0.0,
            "success_rate": 1.0 - failed / calls if calls else None,
        }

    async def alerts(self) -> list[Alert]:
        """Evaluate the rules now; the firing alerts, each with the time it began."""
        topology, health = await asyncio.gather(self._topology(), self._health())
        now = self._clock.time()
        found = evaluate(self.rules, topology, health, self.service_stats(), now)
        async with self._lock:
            return self.tracker.update(found, now)

    def start(self) -> None:
        self.history.start()

    async def stop(self) -> None:
        await self.history.stop()
