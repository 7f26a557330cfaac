"""A breaker half-opening into a crowd (issue item 3): only the probes reach the upstream.

One instance fails until its breaker opens, then recovers but answers slowly (the probes
stay in flight). Once `recovery_timeout` has passed, 200 callers arrive at once: the
upstream sees at most `half_open_max_probes` of them, the rest are refused without being
sent, in under 5 ms (the issue's bound: every refusal's CPU time and the p99 of their wall
time; the slowest wall time may include preemption on a shared machine, so it gets 5x),
and the probes' successes close the breaker.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

from aiohttp import web

from meshkit.client import MeshClient
from meshkit.errors import MeshError
from meshkit.events import BreakerTransition, EventRecorder
from meshkit.resilience import BreakerPolicy, BreakerState, OutlierPolicy
from tests.chaos.support import percentile, report
from tests.conftest import StartUpstream

PROBES = 3
CALLERS = 200
REFUSAL_BOUND = 0.005  # seconds, the bound
PREEMPTION_MARGIN = 5  # the slowest wall-clock refusal may include an OS time slice on a shared machine
POLICY = BreakerPolicy(failure_threshold=3, recovery_timeout=0.3, half_open_max_probes=PROBES)


async def test_half_open_admits_only_the_probes_and_refuses_the_rest_fast(
    upstreams: StartUpstream, record_property: Callable[[str, object], None]
) -> None:
    healthy = asyncio.Event()

    async def handle(request: web.Request) -> web.StreamResponse:
        if not healthy.is_set():
            return web.Response(status=503, text="down")
        await asyncio.sleep(0.3)  # recovered, but slow: the probes are still in flight as the crowd arrives
        return web.Response(text="up")

    up = await upstreams("recovering", handle)
    client = MeshClient.static(
        {"api": [(up.host, up.port)]},
        breaker=POLICY,
        outlier=OutlierPolicy(consecutive_failures=10**9),  # the breaker alone decides here
        rng=random.Random(3),
    )
    events = EventRecorder(client.bus)
    async with client:
        while client.parts.breakers.states().get(f"api-{up.host}-{up.port}") != "open":
            assert up.hits < 50, "the breaker opens after a few failures"
            await client.request("api", "GET", "/")
        healthy.set()
        await asyncio.sleep(POLICY.recovery_timeout + 0.05)
        hits_before = up.hits

        async def caller() -> tuple[bool, float, float]:
            started, cpu = time.perf_counter(), time.thread_time()
            try:
                response = await client.request("api", "GET", "/")
            except MeshError:
                return False, time.perf_counter() - started, time.thread_time() - cpu
            return response.status == 200, time.perf_counter() - started, 0.0

        results = await asyncio.gather(*(caller() for _ in range(CALLERS)))
        probes_seen = up.hits - hits_before
        breaker = client.parts.breakers.get(f"api-{up.host}-{up.port}")
        final_state = breaker.state

    admitted = [t for ok, t, _ in results if ok]
    refused = [t for ok, t, _ in results if not ok]
    refused_cpu = [c for ok, _, c in results if not ok]
    transitions = [(e.old, e.new) for e in events.of(BreakerTransition) if isinstance(e, BreakerTransition)]
    report(
        "half_open_crowd",
        {
            "callers": CALLERS,
            "half_open_max_probes": PROBES,
            "upstream_hits": probes_seen,
            "admitted": len(admitted),
            "refused": len(refused),
            "refusal_p50_us": round(percentile(refused, 50) * 1e6, 1),
            "refusal_p99_us": round(percentile(refused, 99) * 1e6, 1),
            "refusal_max_us": round(max(refused) * 1e6, 1),
            "refusal_cpu_max_us": round(max(refused_cpu) * 1e6, 1),
            "final_state": final_state.value,
        },
        record_property,
    )
    assert 1 <= probes_seen <= PROBES
    assert len(admitted) == probes_seen and len(refused) == CALLERS - probes_seen
    # Each refusal runs without awaiting anything, so its CPU time is what it costs; its wall
    # time adds whatever preemption the machine deals out, hence the margin on the slowest.
    assert max(refused_cpu) < REFUSAL_BOUND, f"slowest refusal used {max(refused_cpu) * 1000:.2f} ms of CPU"
    assert percentile(refused, 99) < REFUSAL_BOUND, f"p99 refusal {percentile(refused, 99) * 1000:.2f} ms"
    assert max(refused) < PREEMPTION_MARGIN * REFUSAL_BOUND, f"slowest refusal {max(refused) * 1000:.2f} ms"
    assert transitions[-2:] == [("open", "half-open"), ("half-open", "closed")]
    assert final_state is BreakerState.CLOSED
