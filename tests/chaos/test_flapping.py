"""A flapping instance (issue item 4): its state changes no more often than hysteresis allows.

A real HTTP health check every 50 ms against an instance whose `/health` follows a
pattern; `ServiceMesh` runs the checks and writes verdicts to its registry. Hysteresis
(3 failures to mark down, 2 passes to mark up) allows one change for the first check (from
UNKNOWN) and then at most one per run of results that reaches its threshold:
- strict alternation (pass, fail, pass, ...) reaches no threshold: at most 1 change;
- a slow flap (2 passes, 3 failures, ...) reaches one every run: it may change each run.
The allowance is computed from the sequence the instance actually answered.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Callable

import pytest
from aiohttp import web

from meshkit.events import EventRecorder, HealthTransition
from meshkit.mesh import ServiceMesh
from meshkit.types import HealthCheck
from tests.chaos.support import report
from tests.conftest import StartUpstream

CHECK = HealthCheck(interval=0.05, timeout=0.5, unhealthy_threshold=3, healthy_threshold=2)
RUN_FOR = 3.0  # seconds of checks


def allowed_changes(results: list[bool], check: HealthCheck) -> int:
    """1 for the first verdict, plus one for each run of equal results that reaches its threshold."""
    allowed = 1 if results else 0
    for ok, run in itertools.groupby(results):
        threshold = check.healthy_threshold if ok else check.unhealthy_threshold
        if len(list(run)) >= threshold:
            allowed += 1
    return allowed


@pytest.mark.parametrize(
    ("name", "pattern"),
    [("alternating", [True, False]), ("slow_flap", [True, True, False, False, False])],
)
async def test_a_flapping_instance_changes_state_only_as_hysteresis_allows(
    upstreams: StartUpstream,
    record_property: Callable[[str, object], None],
    name: str,
    pattern: list[bool],
) -> None:
    answers: list[bool] = []
    cycle = itertools.cycle(pattern)

    async def handle(request: web.Request) -> web.StreamResponse:
        if request.path != "/health":
            return web.Response(text="work")
        ok = next(cycle)
        answers.append(ok)
        return web.Response(status=200 if ok else 503)

    up = await upstreams("flapper", handle)
    mesh = ServiceMesh(rng=random.Random(5))
    events = EventRecorder(mesh.bus)
    async with mesh:
        inst = await mesh.register_service("flappy", up.host, up.port, check=CHECK)
        await asyncio.sleep(RUN_FOR)
        assert mesh.health is not None
        await mesh.health.stop()  # no check after this point: `answers` is complete
        stored = (await mesh.discover("flappy", use_cache=False)).instances[0].state
    changes = [e for e in events.of(HealthTransition) if isinstance(e, HealthTransition)]
    allowed = allowed_changes(answers, CHECK)
    report(
        f"flapping_{name}",
        {
            "check_interval_s": CHECK.interval,
            "thresholds_down_up": f"{CHECK.unhealthy_threshold}/{CHECK.healthy_threshold}",
            "checks": len(answers),
            "failed_checks": answers.count(False),
            "state_changes": len(changes),
            "allowed_by_hysteresis": allowed,
        },
        record_property,
    )
    assert len(answers) >= RUN_FOR / CHECK.interval / 3, "the instance was checked often"
    assert True in answers and False in answers, "it really flapped"
    assert all(e.instance_id == inst.service_id for e in changes)
    assert 1 <= len(changes) <= allowed
    if pattern == [True, False]:
        assert len(changes) == 1  # only the first verdict: alternation never reaches a threshold
    else:
        assert len(changes) >= 4, "a flap that meets the thresholds is followed"
    assert stored.value == changes[-1].new, "the registry holds the last verdict"
