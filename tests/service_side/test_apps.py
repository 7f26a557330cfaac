"""aiohttp and FastAPI services joining the real control plane: registered on start, heartbeats
arrive (a TTL check turns healthy only through them), deregistered on shutdown; middleware wired."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
import uvicorn
from aiohttp import web
from fastapi import FastAPI
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from meshkit.observe.tracing import Tracer
from meshkit.remote import ControlPlaneClient
from meshkit.resilience.deadline import current_deadline
from meshkit.service_side import REGISTRATION_KEY, add_mesh_middleware, aiohttp_registration, mesh_lifespan
from meshkit.types import HealthCheck
from tests.support.plane import PlaneProcess, start_plane

TTL_CHECK = HealthCheck(kind="ttl", ttl=5.0, healthy_threshold=1)


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlaneProcess]:
    proc = start_plane(tmp_path_factory.mktemp("plane") / "data")
    yield proc
    proc.stop()


@pytest.fixture
async def client(plane: PlaneProcess) -> AsyncIterator[ControlPlaneClient]:
    async with ControlPlaneClient(plane.url, plane.token) as c:
        yield c


def bound_socket() -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


async def states(client: ControlPlaneClient, service: str) -> list[str]:
    reply = await client.discover(service, use_cache=False)
    return [i["state"] for i in reply["instances"]]


async def wait_healthy(client: ControlPlaneClient, service: str) -> None:
    for _ in range(100):
        if await states(client, service) == ["healthy"]:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{service} never turned healthy: {await states(client, service)}")


def traced() -> tuple[Tracer, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    return Tracer("svc", processors=[SimpleSpanProcessor(exporter)]), exporter


async def test_aiohttp_service_joins_and_leaves(plane: PlaneProcess, client: ControlPlaneClient) -> None:
    sock = bound_socket()
    port = sock.getsockname()[1]
    tracer, spans = traced()
    seen: dict[str, Any] = {}

    async def handle(request: web.Request) -> web.Response:
        seen["deadline"] = current_deadline()
        return web.Response(text="hi")

    app = web.Application()
    app.router.add_get("/hi", handle)
    reg = aiohttp_registration(
        app, plane.url, "aio-svc", "127.0.0.1", port, token=plane.token,
        check=TTL_CHECK, heartbeat_interval=0.1, tracer=tracer,
    )  # fmt: skip
    assert app[REGISTRATION_KEY] is reg
    runner = web.AppRunner(app)
    await runner.setup()
    assert await states(client, "aio-svc") == ["unknown"]  # registered in on_startup, not yet proven alive
    await web.SockSite(runner, sock).start()
    try:
        await wait_healthy(client, "aio-svc")  # only heartbeats reporting the TTL check get it there
        assert reg.heartbeats >= 1
        async with aiohttp.ClientSession() as http:
            headers = {"X-Meshkit-Deadline-Ms": "5000"}
            async with http.get(f"http://127.0.0.1:{port}/hi", headers=headers) as resp:
                assert await resp.text() == "hi"
        assert seen["deadline"] is not None  # the deadline middleware is installed
        assert [s.name for s in spans.get_finished_spans()] == ["GET /hi"]  # and the tracing one
    finally:
        await runner.cleanup()
    assert await states(client, "aio-svc") == []


async def test_fastapi_service_joins_and_leaves(plane: PlaneProcess, client: ControlPlaneClient) -> None:
    sock = bound_socket()
    port = sock.getsockname()[1]
    tracer, spans = traced()
    inner_ran: list[str] = []

    @contextlib.asynccontextmanager
    async def own_lifespan(app: FastAPI) -> AsyncIterator[None]:
        inner_ran.append("up")
        yield
        inner_ran.append("down")

    app = FastAPI(
        lifespan=mesh_lifespan(
            plane.url,
            "asgi-svc",
            "127.0.0.1",
            port,
            token=plane.token,
            check=TTL_CHECK,
            heartbeat_interval=0.1,
            inner=own_lifespan,
        )
    )

    @app.get("/hi")
    async def hi() -> dict[str, Any]:
        return {"deadline": current_deadline() is not None}

    add_mesh_middleware(app, tracer=tracer)
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, lifespan="on"))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(200):
            if server.started:
                break
            await asyncio.sleep(0.01)
        assert inner_ran == ["up"]
        await wait_healthy(client, "asgi-svc")
        assert app.state.mesh_registration.heartbeats >= 1
        async with aiohttp.ClientSession() as http:
            headers = {"X-Meshkit-Deadline-Ms": "5000"}
            async with http.get(f"http://127.0.0.1:{port}/hi", headers=headers) as resp:
                assert await resp.json() == {"deadline": True}
        assert [s.name for s in spans.get_finished_spans()] == ["GET /hi"]
    finally:
        server.should_exit = True
        await serving
    assert inner_ran == ["up", "down"]
    assert await states(client, "asgi-svc") == []


async def test_a_bad_token_stops_the_service_starting(plane: PlaneProcess) -> None:
    app = web.Application()
    aiohttp_registration(app, plane.url, "bad-token", "127.0.0.1", 9, token="not-a-valid-token-0000")
    runner = web.AppRunner(app)
    with pytest.raises(Exception, match="401"):
        await runner.setup()
    await runner.cleanup()
