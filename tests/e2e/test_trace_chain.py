"""Distributed tracing end to end: a -> b -> c, each a real process, make one trace in the plane.

A real control plane (`meshkit.plane.serve`) and three `chain_service` processes that register
through it, call the next hop by name through their own `MeshClient` and export their spans
over OTLP/HTTP to the plane. c calls d, a plain untraced HTTP server (a service that has not
adopted tracing), so one client span has no server span under it: the dependency graph must
still name its callee `d`, not the address it dialled. One request enters through the plane's
`/call`; the trace is then found by search, read as a tree and checked link by link.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from meshkit.remote import ControlPlaneClient
from tests.support.plane import PlaneProcess, free_port, start_plane

ROOT = Path(__file__).resolve().parents[2]
CHAIN = (("a", "b"), ("b", "c"), ("c", "d"))  # (service, the service it calls)


class ChainProcess:
    """`tests/e2e/chain_service.py` as a subprocess; `stop()` is SIGTERM, then SIGKILL."""

    def __init__(self, name: str, following: str, plane: PlaneProcess, log_dir: Path) -> None:
        self.name = name
        self.port = free_port()
        self.log_path = log_dir / f"chain-{name}.log"
        args = [sys.executable, "-m", "tests.e2e.chain_service", "--name", name, "--next", following]
        args += ["--port", str(self.port), "--plane", plane.url]
        args += ["--token-file", str(plane.data_dir / "admin.token")]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 20.0) -> None:
        give_up = time.monotonic() + timeout
        while time.monotonic() < give_up:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()}")
            if f"ready {self.port}" in self.log():
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} not ready within {timeout}s:\n{self.log()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlaneProcess]:
    proc = start_plane(tmp_path_factory.mktemp("plane") / "data")
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
async def client(plane: PlaneProcess) -> AsyncIterator[ControlPlaneClient]:
    async with ControlPlaneClient(plane.url, plane.token) as c:
        yield c


@pytest.fixture
async def untraced_d(client: ControlPlaneClient) -> AsyncIterator[int]:
    """d: an aiohttp server without meshkit's middleware, registered over REST."""

    async def hop(request: web.Request) -> web.Response:
        return web.json_response({"name": "d"})

    app = web.Application()
    app.router.add_get("/hop", hop)
    app.router.add_get("/health", hop)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await client.register("d", "127.0.0.1", port)
    try:
        yield port
    finally:
        await runner.cleanup()


@pytest.fixture
async def chain(plane: PlaneProcess, untraced_d: int, tmp_path: Path) -> AsyncIterator[list[ChainProcess]]:
    started: list[ChainProcess] = []
    try:
        for name, following in reversed(CHAIN):  # each hop exists before its caller
            started.append(ChainProcess(name, following, plane, tmp_path))
        for proc in started:
            await asyncio.to_thread(proc.wait_ready)
        yield started
    finally:
        for proc in started:
            await asyncio.to_thread(proc.stop)


async def until(check: Any, within: float = 20.0, interval: float = 0.1) -> Any:
    """Poll `await check()` until it returns something truthy; that value, or AssertionError."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + within
    last: Any = None
    while loop.time() < give_up:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"not within {within}s; last: {last!r}")


def flatten(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    stack = list(nodes)
    while stack:
        node = stack.pop()
        out.append(node)
        stack.extend(node["children"])
    return out


def only(spans: list[dict[str, Any]], **match: Any) -> dict[str, Any]:
    found = [s for s in spans if all(s[k] == v for k, v in match.items())]
    assert len(found) == 1, f"expected one span with {match}, got {len(found)}: {found}"
    return found[0]


async def test_three_hop_chain_is_one_trace_with_parent_links(
    client: ControlPlaneClient, chain: list[ChainProcess]
) -> None:
    async def all_registered() -> bool:
        for name in "abcd":
            reply = await client.discover(name, use_cache=False)
            if reply["healthy"] != 1:
                return False
        return True

    await until(all_registered)
    reply = await client.call("a", "GET", "/hop", timeout=10.0)
    assert reply["status_code"] == 200, reply
    assert reply["body"] == {"name": "a", "next": {"name": "b", "next": {"name": "c", "next": {"name": "d"}}}}
    trace_id = reply["trace_id"]
    assert len(trace_id) == 32

    async def found_by_search() -> bool:
        return any(t["trace_id"] == trace_id for t in await client.traces(service_name="c", limit=50))

    await until(found_by_search)

    async def complete() -> list[dict[str, Any]] | None:
        spans = flatten((await client.trace(trace_id))["spans"])
        # per traced hop: a server span, a call span and an attempt span (c's attempt goes to d)
        # and the plane's own call and attempt spans (the plane exports them in batches)
        per_service = {name: sum(s["service"] == name for s in spans) for name in "abc"}
        whole = all(n == 3 for n in per_service.values()) and not any(s["orphan"] for s in spans)
        return spans if whole else None

    spans = await until(complete)
    summary = (await client.trace(trace_id))["summary"]
    print(f"\n[figures] trace_chain: spans={summary['span_count']} services={summary['services']}")
    assert {"a", "b", "c"} <= set(summary["services"])
    assert "d" not in summary["services"]  # d is not traced
    assert {s["service"] for s in spans} <= {"meshkit-plane", "a", "b", "c"}

    by_id = {s["span_id"]: s for s in spans}
    entry = only(spans, service="a", kind="server")
    plane_attempt = by_id[entry["parent_span_id"]]  # a was called by the plane's /call
    assert (plane_attempt["service"], plane_attempt["kind"]) == ("meshkit-plane", "client")
    for caller, callee in CHAIN:
        call = only(spans, service=caller, kind="client", operation=f"call {callee}")
        attempt = only(spans, service=caller, kind="client", operation=f"attempt {callee}")
        assert attempt["parent_span_id"] == call["span_id"]
        assert by_id[call["parent_span_id"]] == only(spans, service=caller, kind="server")
        if callee != "d":
            # the callee's server span is the child of the caller's attempt span
            assert only(spans, service=callee, kind="server")["parent_span_id"] == attempt["span_id"]
        else:
            assert not attempt["children"]

    edges = await client.dependencies()
    pairs = {(e["caller"], e["callee"]) for e in edges}
    print(f"[figures] trace_chain: edges={[(e['caller'], e['callee'], e['calls']) for e in edges]}")
    assert {("meshkit-plane", "a"), ("a", "b"), ("b", "c"), ("c", "d")} <= pairs
    nodes = {n for pair in pairs for n in pair}
    assert "127.0.0.1" not in nodes, f"a client span was named by its address: {sorted(pairs)}"
    assert nodes <= {"meshkit-plane", "a", "b", "c", "d"}, sorted(pairs)
    for edge in edges:  # one request: each hop called once (a call's attempt span is part of it)
        assert (edge["calls"], edge["errors"]) == (1, 0), edge
