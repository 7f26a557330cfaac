"""The demo: a small mesh of real services with traffic, run beside the control plane.

`meshkit serve --demo` (or `python -m meshkit.demo`) starts the control plane and then
`run_demo`: inventory, three catalog instances (one answers 503 most of the time) and a
frontend, each on a 127.0.0.1 ephemeral port, registered through the service-side helper
with an HTTP health check, traced into the plane's collector; then traffic through the
mesh to the frontend at a modest rate, one report line every few seconds, until `stop`.
Open the dashboard to watch topology, breakers and traces.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

from meshkit.demo.services import DemoContext, close_tracer, start_all
from meshkit.demo.traffic import TrafficReport, drive
from meshkit.events import EventBus

OTLP_LOGGER = "opentelemetry.exporter.otlp.proto.http.trace_exporter"


async def run_demo(
    base_url: str,
    admin_token: str,
    stop: asyncio.Event,
    *,
    rate: float = 10.0,
    report_every: float = 5.0,
    say: Callable[[str], None] = print,
    rng: random.Random | None = None,
) -> None:
    """Start the demo services and drive traffic until `stop` is set; then stop and deregister them."""
    ctx = DemoContext(base_url.rstrip("/"), admin_token, EventBus())
    report = TrafficReport()
    ctx.bus.subscribe(report.on_event)
    services = await start_all(ctx, rng or random.Random(7))
    traffic_tracer = ctx.tracer("demo-traffic")
    client = ctx.client(traffic_tracer)
    say(
        f"demo: {len(services)} services up (frontend -> catalog x3, one flaky -> inventory); traffic at {rate:g}/s"
    )
    try:
        await drive(client, stop, report, rate=rate, report_every=report_every, say=say)
    finally:
        logging.getLogger(OTLP_LOGGER).setLevel(logging.CRITICAL)  # the plane may be gone: no retry noise
        await client.aclose()
        await client.resolver.close()  # type: ignore[attr-defined]
        await asyncio.gather(asyncio.to_thread(close_tracer, traffic_tracer), *(s.stop() for s in services))
        say(f"demo: stopped after {report.total_calls + report.counts['calls']} calls")


__all__ = ["run_demo"]
