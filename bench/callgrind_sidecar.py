"""Instructions per proxied request: the meshkit sidecar against a bare asyncio + httptools pass-through.

bench_proxy.py's req/s and CPU per request move with whatever else the shared machine runs;
callgrind's instruction counts do not, so a change to the sidecar's data path can be judged
by a few thousand instructions. Each contender runs under `valgrind --tool=callgrind`, in
front of a local nginx serving 1 KB, twice: `--small` and then `--large` GETs sent over 8
keep-alive connections by plain sockets in this process (not counted); the difference of
the two totals divided by the difference of the counts is one request's cost, start-up
cancelled out. The sidecar is `SidecarProxy` with its default engine and stack over an
in-memory `EmbeddedRegistry` (the control plane is not in the count), the baseline is
`_rawproxy.py` (bench_proxy's "asyncio+httptools" reference, about the least a Python proxy
can spend).

    .venv/bin/python bench/callgrind_sidecar.py              # both, 400 and 1600 requests
    .venv/bin/python bench/callgrind_sidecar.py --only sidecar
    .venv/bin/python bench/callgrind_sidecar.py --only sidecar --without retry,breaker,outlier,deadline,load
    .venv/bin/python bench/callgrind_sidecar.py --only floor --floor-layers 7 0

`--without ROLES` takes those layers out of the sidecar's stack (discovery and the balancer
stay, so requests still find their instance): what the sidecar's HTTP server and client
cost with less or none of the stack on top. An analysis, not a way to run the sidecar.

`--only floor` counts `_layered_floor.py`: a proxy with the sidecar's shape and nothing
else (fields forwarded both ways, a task per request, N async layers that only await the
next, a future per exchange), with each `--floor-layers` count: the least a sidecar built
as a stack of layers can spend in Python, and what one more layer costs.

`--serve-sidecar UPSTREAM_PORT PORT` is the process callgrind runs (not meant to be called by hand).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

CONNECTIONS = 8
WARMUP = 80  # requests before the counted ones, in both runs
REMOVABLE = ("interceptors", "deadline", "retry", "breaker", "outlier", "load")  # --without's choices


def _serve_sidecar(upstream_port: int, port: int, without: list[str]) -> None:
    import asyncio

    import uvloop

    from meshkit.proxy.sidecar import SidecarProxy
    from meshkit.registry.embedded import EmbeddedRegistry
    from meshkit.types import ServiceInstance

    async def main() -> None:
        registry = EmbeddedRegistry()  # in memory
        await registry.start()
        await registry.register(ServiceInstance("bench-0", "bench", "127.0.0.1", upstream_port))
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        proxy = SidecarProxy(f"127.0.0.1:{port}", registry)
        for role in without:
            proxy.client.stack.remove(role)
        async with proxy:
            print("ready", flush=True)
            await stop.wait()

    uvloop.run(main())


def _get(port: int, path: str, count: int, failures: list[str]) -> None:
    """`count` GETs of `path` on one keep-alive connection, each answer read whole and checked."""
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock, sock.makefile("rb") as answers:
        for _ in range(count):
            sock.sendall(request)
            status = answers.readline()
            length = 0
            while (line := answers.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            answers.read(length)
            if not status.startswith(b"HTTP/1.1 200"):
                failures.append(status.decode(errors="replace").strip())
                return


def _load(port: int, path: str, total: int) -> None:
    failures: list[str] = []
    threads = [
        threading.Thread(target=_get, args=(port, path, total // CONNECTIONS, failures))
        for _ in range(CONNECTIONS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(f"answers other than 200: {failures[:3]}")


def count(contender: str, n: int, upstream_port: int, without: str = "") -> int:
    """Total instructions of the contender's process over a run that proxies `n` requests."""
    from _nginx import free_port
    from _processes import wait_accepting

    port = free_port()
    if contender == "sidecar":
        target = [str(Path(__file__).resolve()), "--serve-sidecar", str(upstream_port), str(port)]
        target += ["--without", without] if without else []
        path = "/bench/"
    elif contender.startswith("floor"):  # floor:N, the layered floor with N layers
        target = [str(HERE / "_layered_floor.py"), "--port", str(port)]
        target += ["--upstream", f"127.0.0.1:{upstream_port}", "--layers", contender.partition(":")[2]]
        path = "/bench/"
    else:
        target = [str(HERE / "_rawproxy.py"), "--port", str(port), "--upstream", f"127.0.0.1:{upstream_port}"]
        path = "/"
    with tempfile.TemporaryDirectory(prefix="meshkit-cg-") as tmp:
        log = Path(tmp) / "log"
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/cg.out", sys.executable, *target]
        env = dict(os.environ, PYTHONHASHSEED="0")
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            wait_accepting(port, 120.0, proc, log)
            _load(port, path, WARMUP)
            _load(port, path, n)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)
        match = re.search(r"Collected : (\d+)", log.read_text(errors="replace"))
        if match is None:
            raise RuntimeError(f"{contender} N={n}: no count: {log.read_text(errors='replace')[-2000:]}")
        return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--serve-sidecar", nargs=2, type=int, metavar=("UPSTREAM_PORT", "PORT"), help=argparse.SUPPRESS
    )
    parser.add_argument("--small", type=int, default=400, help="requests in the first run (default 400)")
    parser.add_argument("--large", type=int, default=1600, help="requests in the second run (default 1600)")
    parser.add_argument("--only", choices=("sidecar", "raw", "floor"), help="measure one contender")
    parser.add_argument(
        "--floor-layers", type=int, nargs="+", default=[7, 0], metavar="N",
        help="with --only floor: count the layered floor with each of these numbers of layers (default 7 0)",
    )  # fmt: skip
    parser.add_argument(
        "--without", default="", help=f"comma-separated stack layers to take out: {REMOVABLE}"
    )
    args = parser.parse_args()
    without = [role for role in args.without.split(",") if role]
    unknown = [role for role in without if role not in REMOVABLE]
    if unknown:
        raise SystemExit(f"without: layers must be among {', '.join(REMOVABLE)}, got {', '.join(unknown)}")
    if args.serve_sidecar:
        upstream_port, port = args.serve_sidecar
        _serve_sidecar(upstream_port, port, without)
        return
    for name in ("small", "large"):
        value = getattr(args, name)
        if value < CONNECTIONS or value % CONNECTIONS:
            raise SystemExit(f"{name}: must be a positive multiple of {CONNECTIONS}, got {value}")
    if args.large <= args.small:
        raise SystemExit(f"large: must be more than small ({args.small}), got {args.large}")
    from _nginx import LocalNginx

    if any(n < 0 for n in args.floor_layers):
        raise SystemExit(f"floor-layers: must be >= 0, got {args.floor_layers}")
    contenders: tuple[str, ...] = (args.only,) if args.only else ("raw", "sidecar")
    if args.only == "floor":
        contenders = tuple(f"floor:{n}" for n in args.floor_layers)
    results: dict[str, float] = {}
    with LocalNginx(body_bytes=1024) as nginx:
        for contender in contenders:
            a = count(contender, args.small, nginx.ports[0], args.without)
            b = count(contender, args.large, nginx.ports[0], args.without)
            results[contender] = (b - a) / (args.large - args.small)
            print(f"{contender:8s} {results[contender]:10,.0f} instructions/request", flush=True)
    floors = sorted((int(name[6:]), v) for name, v in results.items() if name.startswith("floor:"))
    if len(floors) >= 2 and floors[-1][0] > floors[0][0]:
        (low, fewest), (high, most) = floors[0], floors[-1]
        print(f"one more async layer: {(most - fewest) / (high - low):,.0f} instructions/request")
    if without:
        print(f"sidecar without {', '.join(without)}")
    if "sidecar" in results and "raw" in results:
        print(f"sidecar / raw pass-through: {results['sidecar'] / results['raw']:.2f}x the instructions")


if __name__ == "__main__":
    main()
