"""The bare aiohttp pass-through: the least a Python asyncio proxy can do, as a baseline.

One aiohttp server, one pooled `ClientSession`, on uvloop; the handler forwards the
method, path and body to the upstream and answers with the upstream's status, content
type and body. No discovery, balancing, retries, breakers or header hygiene: the gap
between this and the meshkit sidecar is what the mesh's features cost, and the gap
between this and nginx is what Python and aiohttp cost. Run as a script by
bench_proxy.py: `python bench/_passthrough.py --port P --upstream http://127.0.0.1:U`.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import aiohttp
from aiohttp import web


def passthrough_app(upstream: str) -> web.Application:
    base = upstream.rstrip("/")
    app = web.Application()

    async def open_session(app: web.Application) -> None:
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
        app["session"] = aiohttp.ClientSession(connector=connector, auto_decompress=False)

    async def close_session(app: web.Application) -> None:
        await app["session"].close()

    async def forward(request: web.Request) -> web.Response:
        body = await request.read() if request.body_exists else None
        session: aiohttp.ClientSession = request.app["session"]
        async with session.request(request.method, base + request.raw_path, data=body) as upstream:
            payload = await upstream.read()
            return web.Response(status=upstream.status, body=payload, content_type=upstream.content_type)

    app.on_startup.append(open_session)
    app.on_cleanup.append(close_session)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


async def serve(port: int, upstream: str) -> None:
    runner = web.AppRunner(passthrough_app(upstream), access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description="bare aiohttp pass-through for bench_proxy.py")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="http://127.0.0.1:PORT")
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.port, args.upstream))
    else:
        uvloop.run(serve(args.port, args.upstream))


if __name__ == "__main__":
    main()
