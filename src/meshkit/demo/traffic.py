"""The demo's traffic: calls to the frontend through the mesh at a bounded rate, with a short report.

A `MeshClient` over the control plane's registry calls `frontend` about `rate` times a
second until told to stop, and every `report_every` seconds prints one line: calls, errors
and what the mesh did meanwhile (breaker transitions and retries, from the shared bus).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Callable

from meshkit.client import MeshClient
from meshkit.errors import MeshError
from meshkit.events import BreakerTransition, Event, RetryAttempt
from meshkit.types import Request


class TrafficReport:
    """Counts calls and mesh events between two report lines."""

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self.total_calls = 0

    def on_event(self, event: Event) -> None:
        if isinstance(event, BreakerTransition):
            self.counts[f"breaker->{event.new}"] += 1
        elif isinstance(event, RetryAttempt):
            self.counts["retries"] += 1

    def line(self) -> str:
        counts, self.counts = self.counts, collections.Counter()
        self.total_calls += counts["calls"]
        events = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()) if k not in ("calls", "errors"))
        return f"demo: {counts['calls']} calls, {counts['errors']} errors" + (f"; {events}" if events else "")


async def drive(
    client: MeshClient,
    stop: asyncio.Event,
    report: TrafficReport,
    *,
    rate: float = 10.0,
    report_every: float = 5.0,
    say: Callable[[str], None] = print,
) -> None:
    """Call the frontend until `stop` is set."""
    loop = asyncio.get_running_loop()
    next_report = loop.time() + report_every
    n = 0
    while not stop.is_set():
        n += 1
        try:
            resp = await client.call(Request("GET", f"/page/item-{n % 20}", service="frontend", timeout=5.0))
            report.counts["calls"] += 1
            if resp.status >= 500:
                report.counts["errors"] += 1
        except MeshError:
            report.counts["calls"] += 1
            report.counts["errors"] += 1
        if loop.time() >= next_report:
            say(report.line())
            next_report += report_every
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0 / rate)
