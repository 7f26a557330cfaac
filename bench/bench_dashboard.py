"""Dashboard render time: 500 services against 10, in Debian's headless Chromium.

Two real control planes (ControlPlane + create_app + the dashboard router, on uvicorn on
127.0.0.1) are filled through the REST API: one with 10 services, one with 500 (one instance
each), plus a call graph exported over OTLP (each service calls the next, a chain of edges).
Each page load is timed from navigation start to the graph ready mark the page sets
(`performance.mark("meshkit-graph-ready")` after the first topology is drawn, laid out and
fitted), and to "all drawn" (the graph painted, then the tables and charts built); the
longest main-thread task (Long Tasks API) tells whether the page froze, and a round trip
of `page.evaluate` after load whether it answers. The
baseline, 10 services, is measured in the same run; the figure to watch is the ratio.

Run: .venv/bin/python bench/bench_dashboard.py [--services 500] [--baseline 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import secrets
import socket
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import uvicorn

from meshkit.plane.api import create_app
from meshkit.plane.dashboard import dashboard_router
from meshkit.plane.plane import ControlPlane

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
V2 = "/api/v1/mesh/v2"
TOKEN = "bench-dashboard-admin-token-" + secrets.token_hex(8)
LONG_TASKS = """
window.__longTasks = [];
new PerformanceObserver(list => list.getEntries().forEach(e => window.__longTasks.push(e.duration)))
  .observe({type: "longtask", buffered: true});
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def start_plane(data_dir: Path) -> tuple[str, uvicorn.Server, asyncio.Task[None]]:
    plane = ControlPlane(data_dir=data_dir, public_read=True, admin_token=TOKEN, health_checks=False)
    app = create_app(plane, extra_routers=[dashboard_router(plane)])
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
        await asyncio.sleep(0.02)
    return f"http://127.0.0.1:{port}", server, task


def otlp_chain(names: list[str]) -> dict[str, Any]:
    """Each service calls the next: one CLIENT span per edge, exported as OTLP/JSON."""
    now = time.time_ns()
    resources = []
    for caller, callee in itertools.pairwise(names):
        span = {
            "traceId": secrets.token_hex(16),
            "spanId": secrets.token_hex(8),
            "name": f"GET /{callee}",
            "kind": 3,
            "startTimeUnixNano": str(now - 5_000_000),
            "endTimeUnixNano": str(now),
            "attributes": [{"key": "peer.service", "value": {"stringValue": callee}}],
        }
        resources.append(
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": caller}}]},
                "scopeSpans": [{"scope": {"name": "bench"}, "spans": [span]}],
            }
        )
    return {"resourceSpans": resources}


async def fill(base: str, count: int) -> None:
    names = [f"svc-{i:04d}" for i in range(count)]
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        sem = asyncio.Semaphore(16)

        async def register(i: int, name: str) -> None:
            body = {"service_name": name, "address": "127.0.0.1", "port": 20000 + i, "tags": ["bench"]}
            async with sem, session.post(base + f"{V2}/register", json=body) as resp:
                assert resp.status == 200, await resp.text()

        await asyncio.gather(*(register(i, n) for i, n in enumerate(names)))
        async with session.post(base + "/v1/traces", json=otlp_chain(names)) as resp:
            assert resp.status == 200, await resp.text()


async def render_once(browser: Any, base: str, expect: int) -> tuple[float, float, float, float]:
    page = await browser.new_page(
        viewport={"width": 1400, "height": 1000}, bypass_csp=True
    )  # for wait_for_function
    await page.add_init_script(LONG_TASKS)
    await page.goto(base + "/dashboard")
    await page.wait_for_function("window.meshkitGraphReady !== undefined", timeout=120_000)
    ready = await page.evaluate("window.meshkitGraphReady")
    assert ready["nodes"] == expect, ready
    await page.wait_for_function("document.body.dataset.polls !== undefined")
    painted = await page.evaluate("performance.getEntriesByName('meshkit-tables')[0].startTime")
    t0 = time.perf_counter()
    await page.evaluate("1")  # the page answers: its main thread is free
    answer_ms = (time.perf_counter() - t0) * 1000
    longest = await page.evaluate("Math.max(0, ...window.__longTasks)")
    await page.close()
    return float(ready["ms"]), float(painted), float(longest), answer_ms


async def main(services: int, baseline: int, rounds: int) -> None:
    from playwright.async_api import async_playwright

    with tempfile.TemporaryDirectory() as tmp:
        small = await start_plane(Path(tmp) / "small")
        large = await start_plane(Path(tmp) / "large")
        started = time.perf_counter()
        await fill(small[0], baseline)
        await fill(large[0], services)
        print(f"filled {baseline} and {services} services in {time.perf_counter() - started:.1f} s")
        results: dict[int, list[tuple[float, float, float, float]]] = {baseline: [], services: []}
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
            await render_once(browser, small[0], baseline)  # warm-up: disk cache, JIT
            for _ in range(rounds):
                results[baseline].append(await render_once(browser, small[0], baseline))
                results[services].append(await render_once(browser, large[0], services))
            await browser.close()
        for server, task in (small[1:], large[1:]):
            server.should_exit = True
            await task
    print(
        f"{'services':>9} {'graph ready ms':>15} {'all drawn ms':>13} {'longest task ms':>16} {'evaluate ms':>12}"
    )
    ready, drawn = {}, {}
    for count, runs in results.items():
        ready[count] = statistics.median(r[0] for r in runs)
        drawn[count] = statistics.median(r[1] for r in runs)
        longest = max(r[2] for r in runs)
        answer = statistics.median(r[3] for r in runs)
        print(f"{count:>9} {ready[count]:>15.1f} {drawn[count]:>13.1f} {longest:>16.1f} {answer:>12.1f}")
    print(
        f"ratio {services}/{baseline}: graph ready {ready[services] / ready[baseline]:.2f}x, "
        f"all drawn {drawn[services] / drawn[baseline]:.2f}x (medians of {rounds} rounds)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=500)
    parser.add_argument("--baseline", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.services, args.baseline, args.rounds))
