"""One hop of a traced call chain, as its own process: `python -m tests.e2e.chain_service`.

    --name a --next b --port P --plane URL --token-file PATH

An aiohttp app on 127.0.0.1:P that joins the mesh the way a real service does: it registers
through the control plane with `aiohttp_registration` (which also installs the tracing and
deadline middleware), exports its spans to the plane's OTLP endpoint, and calls `--next` by
service name through its own `MeshClient` over `CachedRegistry(RemoteRegistry(...))`.
`GET /hop` answers `{"name": ..., "next": <the next hop's answer>}`; the last hop (no
`--next`) answers `{"name": ...}`. It prints `ready <port>` once serving, and on SIGTERM
deregisters and flushes its spans.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

import orjson
from aiohttp import web

from meshkit.client import MeshClient
from meshkit.observe.export import otlp_exporter
from meshkit.observe.tracing import Tracer
from meshkit.registry.cache import CachedRegistry
from meshkit.registry.remote import RemoteRegistry
from meshkit.remote import ControlPlaneClient
from meshkit.service_side import aiohttp_registration
from meshkit.types import Request

CLIENT_KEY = web.AppKey("chain_client", MeshClient)
NEXT_KEY = web.AppKey("chain_next", str)
NAME_KEY = web.AppKey("chain_name", str)


async def hop(request: web.Request) -> web.Response:
    app = request.app
    answer: dict[str, object] = {"name": app[NAME_KEY]}
    following = app[NEXT_KEY]
    if following:
        reply = await app[CLIENT_KEY].call(Request("GET", "/hop", service=following, timeout=5.0))
        if reply.status != 200:
            return web.Response(status=502, text=f"{following} answered {reply.status}")
        answer["next"] = reply.json()
    return web.json_response(answer, dumps=lambda v: orjson.dumps(v).decode())


async def health(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def serve(name: str, following: str, port: int, plane: str, token: str) -> None:
    auth = {"Authorization": f"Bearer {token}"}
    tracer = Tracer(name, processors=[otlp_exporter(plane, auth, timeout=2.0, schedule_delay_millis=100)])
    cache = CachedRegistry(
        RemoteRegistry(ControlPlaneClient(plane, token), owns_client=True), owns_registry=True
    )
    client = MeshClient(cache, tracer=tracer, timeout=5.0)
    app = web.Application()
    app[NAME_KEY], app[NEXT_KEY], app[CLIENT_KEY] = name, following, client
    app.router.add_get("/hop", hop)
    app.router.add_get("/health", health)
    aiohttp_registration(app, plane, name, "127.0.0.1", port, token=token, tracer=tracer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print(f"ready {port}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await runner.cleanup()  # deregisters
    await client.aclose()
    await cache.close()
    await asyncio.to_thread(tracer.force_flush, 2000)
    await asyncio.to_thread(tracer.shutdown)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.e2e.chain_service")
    parser.add_argument("--name", required=True)
    parser.add_argument("--next", default="")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--plane", required=True, help="the control plane's base URL")
    parser.add_argument("--token-file", required=True, type=Path)
    args = parser.parse_args(argv)
    token = args.token_file.read_text().strip()
    asyncio.run(serve(args.name, args.next, args.port, args.plane, token))


if __name__ == "__main__":
    main()
