"""The demo against a real control plane: services register, traffic flows, traces span the chain."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator

import pytest

from meshkit.demo import run_demo
from meshkit.remote import ControlPlaneClient
from tests.support.plane import PlaneProcess, start_plane


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlaneProcess]:
    proc = start_plane(tmp_path_factory.mktemp("plane") / "data")
    yield proc
    proc.stop()


async def test_demo_runs_registers_traces_and_cleans_up(plane: PlaneProcess) -> None:
    stop = asyncio.Event()
    lines: list[str] = []
    demo = asyncio.create_task(
        run_demo(
            plane.url, plane.token, stop, rate=40, report_every=0.5, say=lines.append, rng=random.Random(1)
        )
    )
    async with ControlPlaneClient(plane.url, plane.token) as client:
        try:
            topology: dict[str, object] = {}
            for _ in range(100):
                topology = await client.topology()
                if sum(1 for line in lines if "calls" in line) >= 2:
                    break
                await asyncio.sleep(0.1)
            services = topology["services"]
            assert isinstance(services, dict)
            totals = {name: entry["total"] for name, entry in services.items()}
            assert {k: totals.get(k) for k in ("frontend", "catalog", "inventory")} == {
                "frontend": 1, "catalog": 3, "inventory": 1,
            }  # fmt: skip
            assert any(" calls, " in line for line in lines)
            found: list[dict[str, object]] = []
            for _ in range(60):  # spans are exported in batches, about once a second
                found = await client.traces(service_name="inventory", limit=5)
                if found and any("frontend" in t["services"] for t in found):  # type: ignore[operator]
                    break
                await asyncio.sleep(0.2)
            chain = next(t for t in found if "frontend" in t["services"])  # type: ignore[operator]
            assert {"demo-traffic", "frontend", "catalog", "inventory"} <= set(chain["services"])  # type: ignore[arg-type]
        finally:
            stop.set()
            await asyncio.wait_for(demo, 15)
        after = await client.topology()
    assert not {"frontend", "catalog", "inventory"} & set(after["services"])
    assert lines[-1].startswith("demo: stopped after")
