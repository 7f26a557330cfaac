"""Running the sidecar: the client stack over the control plane's registry, behind an aiohttp server.

`SidecarProxy` wires the pieces: a `ControlPlaneClient`, a `RemoteRegistry` over it, a
`CachedRegistry` in front (the data path resolves from memory and keeps serving the last
snapshot when the plane is away), a `MeshClient` with the default stack, and the
`ProxyHandler`. With a tracer, the call span continues the trace the caller sent
(`CallSpanLayer(extract_from_headers=True)`), so a non-Python caller's trace runs through
the sidecar into the instance. `run_proxy` is `meshkit proxy`: it serves until SIGINT or
SIGTERM, on uvloop when it is installed.

Two engines serve the same handler logic (`meshkit.proxy.forward`): "aiohttp" (aiohttp's
server, the client's default `AiohttpTransport`) and "h1" (`meshkit.proxy.h1server` and
`H1Transport`, asyncio Protocols with httptools' parsers, a fraction of aiohttp's CPU per
request; see bench/bench_proxy.py). `DEFAULT_ENGINE` is the one measured faster.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from functools import partial
from typing import Any

from aiohttp import web

from meshkit.client import MeshClient
from meshkit.observe.tracing import AttemptSpanLayer, CallSpanLayer, Tracer
from meshkit.proxy.h1server import H1ProxyServer
from meshkit.proxy.server import DEFAULT_MAX_BODY, proxy_app
from meshkit.registry.base import Registry
from meshkit.registry.cache import CachedRegistry
from meshkit.registry.remote import RemoteRegistry
from meshkit.remote import ControlPlaneClient
from meshkit.transport.h1 import H1Transport

ENGINES = ("aiohttp", "h1")
DEFAULT_ENGINE = "h1"  # bench_proxy: 3.3x the req/s of the aiohttp engine at 0.29x its CPU per request


def parse_listen(listen: str) -> tuple[str, int]:
    """`host:port` (port 0 picks a free one) for the proxy to listen on."""
    host, _, port = listen.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"listen: must be host:port with a port in 0-65535, got {listen!r}")
    return host, int(port)


def trace_sidecar_calls(client: MeshClient, tracer: Tracer) -> None:
    """Give `client` call and attempt spans, the call span continuing the caller's trace."""
    call_layer = partial(CallSpanLayer, tracer=tracer, extract_from_headers=True)
    if "trace" in client.stack:
        client.stack.replace("trace", call_layer, "one span per call, continuing the caller's trace")
    else:
        client.stack.push("trace", call_layer, "one span per call, continuing the caller's trace")
    if "trace-attempt" not in client.stack:
        attempt_layer = partial(AttemptSpanLayer, tracer=tracer)
        client.stack.insert_before("load", "trace-attempt", attempt_layer, "one span per attempt")


class SidecarProxy:
    """The sidecar: `await proxy.start()` listens; `proxy.url` is where callers send requests."""

    def __init__(
        self,
        listen: str,
        registry: Registry,
        *,
        tracer: Tracer | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        refresh_interval: float = 1.0,
        engine: str | None = None,
        **client_options: Any,
    ) -> None:
        self.host, self.port = parse_listen(listen)
        self.engine = DEFAULT_ENGINE if engine is None else engine
        if self.engine not in ENGINES:
            raise ValueError(f"engine: must be one of {', '.join(ENGINES)}, got {engine!r}")
        if self.engine == "h1":
            client_options.setdefault("transport", H1Transport())
        self.cache = CachedRegistry(registry, refresh_interval=refresh_interval, owns_registry=True)
        self.client = MeshClient(self.cache, **client_options)
        if tracer is not None:
            trace_sidecar_calls(self.client, tracer)
        self.app = proxy_app(self.client, max_body=max_body) if self.engine == "aiohttp" else None
        self.h1_server = H1ProxyServer(self.client, max_body=max_body) if self.engine == "h1" else None
        self._runner: web.AppRunner | None = None

    @classmethod
    def for_control_plane(
        cls, listen: str, control_plane: str, token: str | None = None, **options: Any
    ) -> SidecarProxy:
        plane = ControlPlaneClient(control_plane, token)
        return cls(listen, RemoteRegistry(plane, owns_client=True), **options)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        await self.cache.start()
        if self.h1_server is not None:
            self.port = await self.h1_server.start(self.host, self.port)
            return
        assert self.app is not None
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, backlog=1024)
        await site.start()
        self._runner = runner
        sockets = getattr(site._server, "sockets", None) or ()
        if sockets:
            self.port = int(sockets[0].getsockname()[1])

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        if self.h1_server is not None:
            await self.h1_server.stop()
        await self.client.aclose()
        await self.cache.close()

    async def __aenter__(self) -> SidecarProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def serve_proxy(proxy: SidecarProxy, stop: asyncio.Event | None = None) -> None:
    """Run `proxy` until `stop` is set or the process gets SIGINT/SIGTERM."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with proxy:
        await stop.wait()


def run_proxy(listen: str, control_plane: str, token: str | None = None, **options: Any) -> None:
    """`meshkit proxy`: serve the sidecar on `listen`, discovering through `control_plane`."""
    proxy = SidecarProxy.for_control_plane(listen, control_plane, token, **options)
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve_proxy(proxy))
    else:
        uvloop.run(serve_proxy(proxy))
