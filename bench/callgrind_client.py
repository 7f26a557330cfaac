"""Instructions per request, raw aiohttp vs the meshkit client, counted by callgrind.

Wall-clock and CPU-time figures on a shared machine move by +-30% from run to run;
instruction counts do not. Each contender runs under `valgrind --tool=callgrind` twice,
making `--small` and then `--large` requests (8 concurrent workers, after a warm-up, on
the default asyncio loop) to a local nginx serving 1 KB; the difference of the two totals
divided by the difference of the counts is the cost of one request, start-up and imports
cancelled out (the worker collects garbage once after its warm-up: otherwise the first full
collection of the start-up heap, about 16M instructions, falls between the two counts or
not depending on what was allocated, and moved a figure by 20k per request). The
raw/meshkit ratio is the throughput meshkit can reach relative to raw aiohttp when the client's CPU is the bottleneck (the issue's target is >= 0.85).

    .venv/bin/python bench/callgrind_client.py              # both contenders, 400 and 1200 requests
    .venv/bin/python bench/callgrind_client.py --only mesh --port 8080   # an nginx already running
    .venv/bin/python bench/callgrind_client.py --tracing 1.0 0.0 --transport h1   # tracing's cost
    .venv/bin/python bench/callgrind_client.py --tracing 1.0 --exporter count     # spans not read
    .venv/bin/python bench/callgrind_client.py --tracing 1.0 --exporter otlp      # OTLP/HTTP export

`--tracing RATIO...` measures the meshkit client with tracing off and with a `Tracer` at
each sampling ratio (its spans exported as bench_tracing.py does: the tracer's batch
processor to an exporter reading every field and keeping nothing; `--exporter count`, one
only counting spans, gives the instrumentation's cost alone), on `--transport` (aiohttp,
meshkit's default, or h1); every thread of the process is counted, so the export
thread's work is in the figure.

`--workers 32` runs 32 concurrent workers instead of 8 (with `--small 3200 --large 9600`:
the counts must be multiples of it). `--worker MODE N PORT WORKERS` is the process callgrind runs (not meant to be called by hand).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

WORKERS = 8  # concurrent workers by default (`--workers`)
WARMUP = 50
CONTENDERS = ("raw", "mesh")  # and "transport" (--only transport): the floor under the stack


async def _work(mode: str, n: int, port: int, workers: int) -> None:
    import aiohttp

    url = f"http://127.0.0.1:{port}/"
    if mode == "raw":
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100))

        async def call() -> None:
            async with session.get(url) as resp:
                await resp.read()

        close = session.close
    elif mode == "transport":  # meshkit's transport alone, instance and deadline set by hand
        from meshkit import AiohttpTransport, Request
        from meshkit.types import ServiceInstance

        transport = AiohttpTransport()
        instance = ServiceInstance("bench-0", "bench", "127.0.0.1", port)

        async def call() -> None:
            deadline = time.monotonic() + 30.0
            resp = await transport(Request("GET", "/", instance=instance, deadline=deadline))
            if resp.status != 200:
                raise RuntimeError(f"meshkit transport: status {resp.status}")

        close = transport.aclose
    else:  # "mesh", or "mesh:<transport>:<ratio or off>:<read|count>" (--tracing)
        from meshkit import Request
        from meshkit.client import MeshClient

        client = MeshClient.static({"bench": [("127.0.0.1", port)]}, **_mesh_options(mode, port))

        async def call() -> None:
            resp = await client.call(Request("GET", "/", service="bench"))
            if resp.status != 200:
                raise RuntimeError(f"meshkit: status {resp.status}")

        close = client.aclose

    async def worker(k: int) -> None:
        for _ in range(k):
            await call()

    await worker(WARMUP)
    gc.collect()  # the start-up heap's first full collection is start-up cost, not the requests'
    await asyncio.gather(*(worker(n // workers) for _ in range(workers)))
    await close()


def _mesh_options(mode: str, port: int) -> dict[str, object]:
    if mode == "mesh":
        return {}
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import SpanExporter

    from _tracing_contenders import CountingExporter, CountingMemoryExporter
    from meshkit.observe.tracing import Tracer
    from meshkit.observe.wire_exporter import WireOTLPSpanExporter
    from meshkit.transport.h1 import H1Transport

    _, transport, ratio, exporter = mode.split(":")
    options: dict[str, object] = {"transport": H1Transport() if transport == "h1" else None}
    if ratio != "off":
        endpoint = f"http://127.0.0.1:{port}/v1/traces"  # the nginx answers 200 to any POST
        chosen: SpanExporter = {
            "count": CountingExporter,
            "read": CountingMemoryExporter,
            "otlp": lambda: WireOTLPSpanExporter(endpoint=endpoint, timeout=5),
            "otlp-sdk": lambda: OTLPSpanExporter(endpoint=endpoint, timeout=5),
        }[exporter]()
        options["tracer"] = Tracer("bench", sample_ratio=float(ratio), exporters=[chosen])
    return options


def count(mode: str, n: int, port: int, workers: int) -> int:
    """Total instructions of one worker process making `n` requests."""
    with tempfile.TemporaryDirectory(prefix="meshkit-cg-") as tmp:
        cmd = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={tmp}/cg.out",
            sys.executable,
            str(Path(__file__).resolve()),
            "--worker",
            mode,
            str(n),
            str(port),
            str(workers),
        ]
        env = dict(os.environ, PYTHONHASHSEED="0")
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
        match = re.search(r"Collected : (\d+)", proc.stderr)
        if proc.returncode != 0 or match is None:
            raise RuntimeError(f"{mode} N={n}: exit {proc.returncode}: {proc.stderr[-2000:]}")
        return int(match.group(1))


def per_request(mode: str, small: int, large: int, port: int, workers: int) -> float:
    a = count(mode, small, port, workers)
    b = count(mode, large, port, workers)
    return (b - a) / (large - small)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--worker", nargs=4, metavar=("MODE", "N", "PORT", "WORKERS"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--workers", type=int, default=WORKERS, help=f"concurrent workers (default {WORKERS})"
    )
    parser.add_argument("--small", type=int, default=400, help="requests in the first run (default 400)")
    parser.add_argument("--large", type=int, default=1200, help="requests in the second run (default 1200)")
    parser.add_argument("--port", type=int, help="use an nginx already listening on this port")
    parser.add_argument("--only", choices=(*CONTENDERS, "transport"), help="measure one contender")
    parser.add_argument(
        "--tracing",
        type=float,
        nargs="+",
        metavar="RATIO",
        help="the client with tracing off and at RATIO...",
    )
    parser.add_argument("--transport", choices=("aiohttp", "h1"), default="aiohttp", help="with --tracing")
    parser.add_argument(
        "--exporter",
        choices=("read", "count", "otlp", "otlp-sdk"),
        default="read",
        help="with --tracing: an exporter reading every field (default), one only counting spans, or "
        "OTLP/HTTP to the local nginx with meshkit's wire encoder (otlp_exporter's) or the SDK's",
    )
    args = parser.parse_args()
    if args.workers < 1:
        raise SystemExit(f"workers: must be >= 1, got {args.workers}")
    if args.worker:
        mode, n, port, workers = args.worker
        asyncio.run(_work(mode, int(n), int(port), int(workers)))
        return
    for name in ("small", "large"):
        value = getattr(args, name)
        if value < args.workers or value % args.workers:
            raise SystemExit(
                f"{name}: must be a positive multiple of --workers ({args.workers}), got {value}"
            )
    if args.large <= args.small:
        raise SystemExit(f"large: must be more than small ({args.small}), got {args.large}")
    modes: tuple[str, ...] = (args.only,) if args.only else CONTENDERS
    if args.tracing:
        if any(not 0.0 <= r <= 1.0 for r in args.tracing):
            raise SystemExit(f"tracing: each ratio must be in [0, 1], got {args.tracing}")
        modes = tuple(f"mesh:{args.transport}:{r}:{args.exporter}" for r in ("off", *args.tracing))
    if args.port is not None:
        results = {m: per_request(m, args.small, args.large, args.port, args.workers) for m in modes}
    else:
        from _nginx import LocalNginx

        with LocalNginx(body_bytes=1024) as nginx:
            results = {m: per_request(m, args.small, args.large, nginx.ports[0], args.workers) for m in modes}
    for mode, value in results.items():
        print(f"{mode:>5}: {value:>10,.0f} instructions/request")
    if args.tracing:
        off = results[modes[0]]
        for mode in modes[1:]:
            extra = results[mode] - off
            print(f"{mode}: tracing adds {extra:,.0f} instructions/request, off/on {off / results[mode]:.3f}")
    elif len(results) == 2:
        raw, mesh = results["raw"], results["mesh"]
        print(f"ratio raw/meshkit: {raw / mesh:.3f}  (meshkit adds {mesh - raw:,.0f} instructions/request)")


if __name__ == "__main__":
    main()
