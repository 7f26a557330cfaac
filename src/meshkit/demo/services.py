"""The demo's services: frontend -> catalog (three instances, one flaky) -> inventory.

Each is a small aiohttp app on a 127.0.0.1 ephemeral port that registers itself through
`aiohttp_registration` (with an HTTP health check on /health), traces every request and
calls the next hop through its own `MeshClient` over the control plane's registry, so a
trace spans the whole chain and the flaky catalog instance trips breakers and retries.
"""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from meshkit.client import MeshClient
from meshkit.events import EventBus
from meshkit.observe.export import otlp_exporter
from meshkit.observe.tracing import Tracer
from meshkit.proxy.sidecar import trace_sidecar_calls
from meshkit.registry.cache import CachedRegistry
from meshkit.registry.remote import RemoteRegistry
from meshkit.remote import ControlPlaneClient
from meshkit.resilience.breaker import BreakerPolicy
from meshkit.service_side import aiohttp_registration
from meshkit.types import HealthCheck, Request

CLIENT_KEY = web.AppKey("meshkit_demo_client", MeshClient)
CHECK = HealthCheck(kind="http", path="/health", interval=2.0, timeout=1.0)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class DemoContext:
    """What every demo service shares: the plane's address and token, and one event bus."""

    base_url: str
    token: str
    bus: EventBus

    def tracer(self, name: str) -> Tracer:
        headers = {"Authorization": f"Bearer {self.token}"}
        exporter = otlp_exporter(
            self.base_url + "/v1/traces", headers, timeout=2.0, schedule_delay_millis=1000
        )
        return Tracer(name, processors=[exporter])

    def client(self, tracer: Tracer) -> MeshClient:
        plane = ControlPlaneClient(self.base_url, self.token)
        cache = CachedRegistry(RemoteRegistry(plane, owns_client=True), owns_registry=True)
        client = MeshClient(
            cache,
            strategy="round_robin",
            bus=self.bus,
            breaker=BreakerPolicy(failure_threshold=3, recovery_timeout=10.0),
        )
        trace_sidecar_calls(client, tracer)
        return client


def close_tracer(tracer: Tracer) -> None:
    """Flush what we can in half a second, then drop the rest: the plane may already be gone."""
    tracer.force_flush(300)
    for processor in tracer.provider._active_span_processor._span_processors:
        exporter = getattr(processor, "span_exporter", None)
        if exporter is not None:
            exporter.shutdown()  # no more retries against a plane that has stopped
    tracer.shutdown()


@dataclass
class RunningService:
    name: str
    runner: web.AppRunner
    client: MeshClient | None
    tracer: Tracer

    async def stop(self) -> None:
        await self.runner.cleanup()  # deregisters (on_shutdown) before closing
        if self.client is not None:
            await self.client.aclose()
            await self.client.resolver.close()  # type: ignore[attr-defined]
        await asyncio.to_thread(close_tracer, self.tracer)


async def _health(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def start_service(
    ctx: DemoContext, name: str, handler: Handler, route: str, *, calls_out: bool
) -> tuple[RunningService, int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    tracer = ctx.tracer(name)
    client = ctx.client(tracer) if calls_out else None
    app = web.Application()
    if client is not None:
        app[CLIENT_KEY] = client
    app.router.add_get(route, handler)
    app.router.add_get("/health", _health)
    aiohttp_registration(
        app, ctx.base_url, name, "127.0.0.1", port, token=ctx.token, check=CHECK, tracer=tracer
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    return RunningService(name, runner, client, tracer), port


async def inventory(request: web.Request) -> web.Response:
    item = request.match_info["item"]
    return web.json_response({"item": item, "stock": sum(map(ord, item)) % 17})


def catalog(flaky: float, rng: random.Random) -> Handler:
    async def handle(request: web.Request) -> web.Response:
        if rng.random() < flaky:
            return web.Response(status=503, text="catalog instance overloaded")
        item = request.match_info["item"]
        client = request.app[CLIENT_KEY]
        stock = await client.call(Request("GET", f"/stock/{item}", service="inventory", timeout=2.0))
        return web.json_response({"item": item, "stock": stock.json()["stock"], "served_by": request.host})

    return handle


async def frontend(request: web.Request) -> web.Response:
    client = request.app[CLIENT_KEY]
    item = request.match_info["item"]
    answer = await client.call(Request("GET", f"/items/{item}", service="catalog", timeout=3.0))
    return web.Response(status=answer.status, body=answer.body, content_type="application/json")


async def start_all(ctx: DemoContext, rng: random.Random) -> list[RunningService]:
    """inventory first, then catalog x3 (the third flaky), then frontend: each hop exists before its caller."""
    started = [(await start_service(ctx, "inventory", inventory, "/stock/{item}", calls_out=False))[0]]
    for flaky in (0.0, 0.0, 0.6):
        service, _ = await start_service(ctx, "catalog", catalog(flaky, rng), "/items/{item}", calls_out=True)
        started.append(service)
    started.append((await start_service(ctx, "frontend", frontend, "/page/{item}", calls_out=True))[0])
    return started
