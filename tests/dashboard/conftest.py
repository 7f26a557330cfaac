"""Fixtures for the dashboard's browser tests: a real control plane process and Debian's Chromium.

`plane_process` starts `tests.dashboard.serve_dashboard` (ControlPlane + create_app + the
dashboard router on uvicorn) on a free port with a temporary data directory; `browser` is
headless Chromium from /usr/bin/chromium driven by Playwright (no browser download).
Screenshots go to test-artifacts/dashboard/ (git-ignored).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.servers import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "dashboard"
ADMIN_TOKEN = "dashboard-test-admin-" + secrets.token_hex(8)
V2 = "/api/v1/mesh/v2"

if not Path(CHROMIUM).exists():  # pragma: no cover - the image installs it
    pytest.skip("Debian's chromium is not installed at /usr/bin/chromium", allow_module_level=True)


@dataclass
class PlaneProcess:
    base: str
    proc: asyncio.subprocess.Process
    token: str = ADMIN_TOKEN

    async def request(self, method: str, path: str, *, check: bool = True, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, self.base + path, headers=headers, **kwargs) as resp,
        ):
            body = await resp.json(content_type=None)
            assert resp.status < 400 or not check, (resp.status, body)
            return body

    async def register(self, name: str, port: int, **extra: Any) -> str:
        body = {"service_name": name, "address": "127.0.0.1", "port": port, **extra}
        reply = await self.request("POST", f"{V2}/register", json=body)
        return str(reply["service_id"])

    async def call(self, name: str, path: str = "/", count: int = 1) -> list[Any]:
        body = {"service_name": name, "path": path, "retry_count": 0, "timeout": 5.0}
        return [await self.request("POST", f"{V2}/call", json=body, check=False) for _ in range(count)]

    async def fast_health_checks(self) -> None:
        """Probe every 0.2 s and flip on the first failure, so a killed instance shows at once."""
        params = {"interval": "0.2", "timeout": "0.5", "unhealthy_threshold": "1", "healthy_threshold": "1"}
        await self.request("POST", f"{V2}/configure/health-check", params=params)

    async def export_call(self, caller: str, callee: str, name: str, *, error: bool = False) -> str:
        """Export one traced call over OTLP/JSON: `caller`'s CLIENT span and, inside it, `callee`'s
        SERVER span, as two services instrumented with OpenTelemetry would."""
        trace_id, client_id = secrets.token_hex(16), secrets.token_hex(8)
        now = time.time_ns()
        status = {"code": 2 if error else 1}
        client = {
            "traceId": trace_id,
            "spanId": client_id,
            "name": name,
            "kind": 3,
            "startTimeUnixNano": str(now - 20_000_000),
            "endTimeUnixNano": str(now),
            "attributes": [{"key": "peer.service", "value": {"stringValue": callee}}],
            "status": status,
        }
        server = {
            "traceId": trace_id,
            "spanId": secrets.token_hex(8),
            "parentSpanId": client_id,
            "name": name,
            "kind": 2,
            "startTimeUnixNano": str(now - 15_000_000),
            "endTimeUnixNano": str(now - 5_000_000),
            "status": status,
        }

        def resource(service: str, span: dict[str, Any]) -> dict[str, Any]:
            return {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
                "scopeSpans": [{"scope": {"name": "tests"}, "spans": [span]}],
            }

        export = {"resourceSpans": [resource(caller, client), resource(callee, server)]}
        await self.request("POST", "/v1/traces", json=export)
        return trace_id


StartPlane = Callable[..., Awaitable[PlaneProcess]]


async def _wait_ready(base: str, proc: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + 20
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                raise RuntimeError(f"control plane exited with {proc.returncode}")
            try:
                async with session.get(base + "/dashboard/config") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("control plane did not start within 20 s")


@pytest.fixture
async def plane_process(tmp_path: Path) -> AsyncIterator[StartPlane]:
    started: list[asyncio.subprocess.Process] = []

    async def start(
        *, public_read: bool = False, history_interval: float = 1.0, refresh: float = 0.5
    ) -> PlaneProcess:
        port = free_port()
        args = ["--port", str(port), "--data-dir", str(tmp_path / f"plane-{port}")]
        args += ["--history-interval", str(history_interval), "--refresh", str(refresh)]
        if public_read:
            args.append("--public-read")
        env = {**os.environ, "MESHKIT_ADMIN_TOKEN": ADMIN_TOKEN}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.dashboard.serve_dashboard", *args, cwd=ROOT, env=env
        )
        started.append(proc)
        base = f"http://127.0.0.1:{port}"
        await _wait_ready(base, proc)
        return PlaneProcess(base, proc)

    yield start
    for proc in started:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        try:
            yield chromium
        finally:
            await chromium.close()


async def graph_ready(page: Any, wait_ms: float = 15_000) -> None:
    await page.wait_for_function("window.meshkitGraphReady !== undefined", timeout=wait_ms)


async def node_ids(page: Any) -> set[str]:
    return set(await page.evaluate("window.meshkitCy.nodes().map(n => n.id())"))


async def edge_pairs(page: Any) -> set[tuple[str, str]]:
    pairs = await page.evaluate("window.meshkitCy.edges().map(e => [e.source().id(), e.target().id()])")
    return {(a, b) for a, b in pairs}


async def click_node(page: Any, node_id: str) -> None:
    """Click a node with the mouse where cytoscape drew it."""
    x, y = await page.evaluate(
        """id => { const n = window.meshkitCy.getElementById(id); const p = n.renderedPosition();
                   const r = window.meshkitCy.container().getBoundingClientRect();
                   return [r.left + p.x, r.top + p.y]; }""",
        node_id,
    )
    await page.mouse.click(x, y)


async def screenshot(page: Any, name: str) -> None:
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
