"""Sidecar throughput: wrk through `meshkit proxy` against wrk through nginx `proxy_pass`, same upstream.

The upstream is a one-worker nginx answering from memory, so what is measured is the proxy.
The baseline is a second one-worker nginx with `proxy_pass` to it over a keep-alive upstream
pool; the contender is the meshkit sidecar (full client stack: discovery from the cache,
P2C balancer, breaker, retry, deadline; uvloop) in its own process, resolving from an
in-memory registry so the control plane is off the data path, as it is in production.
A bare aiohttp proxy (no mesh) runs too, as the floor for any\nPython proxy. Rounds alternate between them and the median of each is reported, with the ratio
meshkit/nginx (target >= 0.5).

    .venv/bin/python bench/bench_proxy.py [--duration 5] [--rounds 3] [--connections 32]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._nginx import LocalNginx, free_port


class ProxyNginx(LocalNginx):
    """nginx whose `/up/` proxies to `upstream_port` over a keep-alive pool."""

    def __init__(self, upstream_port: int, **kwargs: Any) -> None:
        location = (
            "        location /up/ { proxy_pass http://backend/; proxy_http_version 1.1;"
            ' proxy_set_header Connection ""; }'
        )
        super().__init__(extra_locations=location, **kwargs)
        self._upstream_port = upstream_port

    def config(self, tmp: Path, ports: Any) -> str:
        pool = f"    upstream backend {{ server 127.0.0.1:{self._upstream_port}; keepalive 64; }}\n"
        return super().config(tmp, ports).replace("http {\n", "http {\n" + pool, 1)


async def serve_sidecar(port: int, upstream_port: int) -> None:
    from meshkit.proxy import SidecarProxy
    from meshkit.registry.embedded import EmbeddedRegistry
    from meshkit.types import ServiceInstance, ServiceState

    registry = EmbeddedRegistry()
    await registry.start()
    sid = f"svc-127.0.0.1-{upstream_port}"
    await registry.register(
        ServiceInstance(sid, "svc", "127.0.0.1", upstream_port, state=ServiceState.HEALTHY)
    )
    async with SidecarProxy(f"127.0.0.1:{port}", registry):
        await asyncio.Event().wait()


async def serve_raw(port: int, upstream_port: int) -> None:
    """The floor for a Python proxy: aiohttp server + aiohttp client, no mesh at all."""
    import aiohttp
    from aiohttp import web

    url = f"http://127.0.0.1:{upstream_port}/"
    async with aiohttp.ClientSession(auto_decompress=False) as session:

        async def forward(request: web.Request) -> web.Response:
            async with session.get(url) as resp:
                return web.Response(status=resp.status, body=await resp.read())

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", forward)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        await asyncio.Event().wait()


def wait_http(url: str, timeout: float = 15.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer 200 within {timeout}s")


def wrk(url: str, duration: float, connections: int, threads: int) -> float:
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s", url],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw errors against {url}:\n{out}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if match is None:
        raise RuntimeError(f"no Requests/sec in wrk output:\n{out}")
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--serve", nargs=3, metavar=("KIND", "PORT", "UPSTREAM_PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        import uvloop

        kind, port, upstream_port = args.serve
        serve = serve_sidecar if kind == "sidecar" else serve_raw
        uvloop.run(serve(int(port), int(upstream_port)))
        return
    with LocalNginx(body_bytes=1024) as upstream:
        up_port = upstream.ports[0]
        with ProxyNginx(up_port) as nginx:
            ports = {"sidecar": free_port(), "raw": free_port()}
            procs = [
                subprocess.Popen([sys.executable, __file__, "--serve", kind, str(port), str(up_port)])
                for kind, port in ports.items()
            ]
            try:
                targets = {
                    "nginx proxy_pass": f"http://127.0.0.1:{nginx.ports[0]}/up/",
                    "raw aiohttp proxy": f"http://127.0.0.1:{ports['raw']}/svc/",
                    "meshkit proxy": f"http://127.0.0.1:{ports['sidecar']}/svc/",
                }
                for url in targets.values():
                    wait_http(url)
                    wrk(url, 1, args.connections, args.threads)  # warm-up
                results: dict[str, list[float]] = {name: [] for name in targets}
                for _ in range(args.rounds):
                    for name, url in targets.items():
                        results[name].append(wrk(url, args.duration, args.connections, args.threads))
            finally:
                for proc in procs:
                    proc.terminate()
                    proc.wait(10)
    print(f"wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s, {args.rounds} rounds, 1 KiB body")
    medians = {name: statistics.median(values) for name, values in results.items()}
    for name, values in results.items():
        shown = ", ".join(f"{v:,.0f}" for v in values)
        print(f"  {name:18} median {medians[name]:>10,.0f} req/s   ({shown})")
    ratio = medians["meshkit proxy"] / medians["nginx proxy_pass"]
    print(f"  ratio meshkit/nginx: {ratio:.2f} (target >= 0.5)")
    floor = medians["meshkit proxy"] / medians["raw aiohttp proxy"]
    print(
        f"  ratio meshkit/raw aiohttp proxy: {floor:.2f} (the cost of the mesh stack over a bare Python proxy)"
    )


if __name__ == "__main__":
    main()
