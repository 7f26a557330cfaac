"""An instance killed with SIGKILL under open-loop load: callers barely notice (issue item 1).

Three upstream processes behind a `ServiceMesh` (embedded registry, active HTTP checks every
0.5 s, 3 failures to mark down), 200 GET/s open loop. One instance is SIGKILLed mid-run.
Asserted, as the issue sets them:
- client-visible success >= 99.9% (GET is idempotent: a reset or refused attempt is retried
  on another instance);
- passive: no attempt reaches the dead instance later than 1 s after its death (outlier
  ejection and the breaker see the failures of real calls);
- active: the health checker marks it unhealthy within interval x threshold (x 1.1 for the
  checker's +-10% interval jitter, plus 0.25 s of event-loop slack on a shared machine);
- p99 latency of calls started 10 s after the kill is within 2x the p99 before it.
The default suite runs 18 s with the kill at 5 s; `make soak` runs the issue's 60 s with the
kill at 20 s. Figures go to test-artifacts/chaos-figures.jsonl (see docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Callable

import pytest

from meshkit.events import EventRecorder, HealthTransition
from meshkit.mesh import ServiceMesh
from meshkit.types import HealthCheck
from tests.chaos.conftest import StartProcesses
from tests.chaos.support import AttemptLog, LoopLag, at, open_loop, report

RATE = 200.0  # requests per second, open loop
CHECK = HealthCheck(interval=0.5, timeout=0.25, unhealthy_threshold=3, healthy_threshold=2)
CHECK_JITTER = 1.10  # the checker waits interval x (1 +- 10%)
LOOP_SLACK = 0.25  # seconds of event-loop lag allowed on a shared 2-core machine
PASSIVE_BOUND = 1.0  # the "no traffic 1 s after its death"
WARMUP = 1.0  # seconds of load before the baseline p99 is taken


async def run_kill_under_load(
    upstream_processes: StartProcesses,
    record_property: Callable[[str, object], None],
    *,
    duration: float,
    kill_at: float,
    name: str,
) -> None:
    procs = await upstream_processes(3, delay_ms=5.0)
    mesh = ServiceMesh(rng=random.Random(7))
    events = EventRecorder(mesh.bus)
    attempts = AttemptLog().install(mesh.client)
    victim = procs[1]
    async with mesh:
        ids = []
        for proc in procs:
            host, port = proc.address
            inst = await mesh.register_service("work", host, port, check=CHECK)
            ids.append(inst.service_id)
        victim_id = ids[1]
        for _ in range(100):  # every instance has passed its first check (bounded wait)
            states = {i.state.value for i in await mesh.discover_services("work")}
            if states == {"healthy"}:
                break
            await asyncio.sleep(0.05)
        assert states == {"healthy"}

        async def call(i: int) -> str:
            response = await mesh.client.request("work", "GET", f"/work/{i}")
            if response.status != 200:
                raise RuntimeError(f"status {response.status}")
            assert response.instance is not None
            return response.instance.service_id

        killed: dict[str, float] = {}

        async def kill_victim(start: float) -> None:
            await at(start, kill_at)
            killed["wall"] = time.time()
            killed["mono"] = time.monotonic()
            await asyncio.to_thread(victim.kill)

        async with LoopLag() as lag:
            start = asyncio.get_running_loop().time()
            killer = asyncio.create_task(kill_victim(start))
            load = await open_loop(call, rate=RATE, duration=duration)
            await killer
        end = time.monotonic()

    before = attempts.count(victim_id, until=killed["mono"])
    late = attempts.count(victim_id, since=killed["mono"] + PASSIVE_BOUND)
    after_kill = attempts.times[victim_id][before:]
    last_attempt = (after_kill[-1] - killed["mono"]) if after_kill else 0.0
    downs = [
        e
        for e in events.of(HealthTransition)
        if isinstance(e, HealthTransition) and e.instance_id == victim_id and e.new == "unhealthy"
    ]
    marked_down = downs[0].at - killed["wall"] if downs else float("inf")
    active_bound = CHECK.interval * CHECK.unhealthy_threshold * CHECK_JITTER + LOOP_SLACK
    baseline_p99 = load.p(99, WARMUP, kill_at)
    recovered_p99 = load.p(99, kill_at + 10.0)
    success = load.success_ratio()
    report(
        name,
        {
            "rate_rps": RATE,
            "duration_s": duration,
            "kill_at_s": kill_at,
            "sent": load.sent,
            "success_ratio": round(success, 5),
            "errors": load.errors(),
            "victim_attempts_before_kill": before,
            "victim_attempts_after_kill": len(after_kill),
            "victim_last_attempt_after_kill_s": round(last_attempt, 3),
            "victim_attempts_1s_after_kill": late,
            "marked_unhealthy_after_s": round(marked_down, 3),
            "active_bound_s": round(active_bound, 3),
            "baseline_p50_ms": round(load.p(50, WARMUP, kill_at) * 1000, 2),
            "baseline_p99_ms": round(baseline_p99 * 1000, 2),
            "kill_window_p99_ms": round(load.p(99, kill_at, kill_at + 10.0) * 1000, 2),
            "recovered_p99_ms": round(recovered_p99 * 1000, 2),
            "loop_lag_p99_baseline_ms": round(lag.p(99, WARMUP, kill_at) * 1000, 2),
            "loop_lag_p99_recovered_ms": round(lag.p(99, kill_at + 10.0) * 1000, 2),
            "load_average_1m": round(os.getloadavg()[0], 2),
            "run_s": round(end - killed["mono"] + kill_at, 1),
        },
        record_property,
    )
    assert before > 0, "the victim served traffic before the kill"
    assert success >= 0.999, load.errors()
    assert late == 0, f"{late} attempts reached the dead instance more than 1 s after its death"
    assert marked_down <= active_bound, f"marked unhealthy after {marked_down:.3f}s > {active_bound:.3f}s"
    assert recovered_p99 <= 2 * baseline_p99, (
        f"p99 {recovered_p99 * 1000:.2f} ms > 2 x {baseline_p99 * 1000:.2f} ms"
    )


async def test_an_instance_killed_under_load_costs_callers_nothing(
    upstream_processes: StartProcesses, record_property: Callable[[str, object], None]
) -> None:
    await run_kill_under_load(
        upstream_processes, record_property, duration=18.0, kill_at=5.0, name="instance_killed_short"
    )


@pytest.mark.soak
@pytest.mark.timeout(300)
async def test_an_instance_killed_under_load_for_60s(
    upstream_processes: StartProcesses, record_property: Callable[[str, object], None]
) -> None:
    await run_kill_under_load(
        upstream_processes, record_property, duration=60.0, kill_at=20.0, name="instance_killed_60s"
    )
