"""Where the sidecar's CPU per request goes: cProfile inside the proxy process under wrk load.

`profile_sidecar` starts the aiohttp pass-through and then the meshkit sidecar each under
cProfile with a CPU clock (`_cprofile_run.py`, on the proxy core), warms each up, profiles
exactly one measured wrk run (the profiler switched on and off by signals) and prints the
own time per request by module, sidecar against pass-through (what the mesh adds over
a bare aiohttp proxy), then the sidecar's top functions by own and by cumulative time.
cProfile slows Python code about twofold, so read the figures as proportions.
"""

from __future__ import annotations

import argparse
import os
import pstats
import signal
import tempfile
import time
from pathlib import Path

from _nginx import LocalNginx
from _profile import by_module, compare, top_functions
from _proxy_contenders import AiohttpContender, MeshkitProxyContender, ProxyContender
from _stats import format_table
from _wrk import WrkResult, run_wrk


def profiled_run(
    contender: ProxyContender,
    profile: Path,
    args: argparse.Namespace,
    load: set[int] | None,
    proxy: set[int] | None,
) -> WrkResult:
    """Warm `contender` up, then profile exactly one measured wrk run (SIGUSR1 on, SIGUSR2 off)."""
    try:
        contender.start(proxy)
        contender.verify()
        run_wrk(contender.url, connections=args.connections, seconds=1, threads=args.threads, cpus=load)
        pid = contender.measured[0]
        os.kill(pid, signal.SIGUSR1)
        run = run_wrk(
            contender.url, connections=args.connections, seconds=args.seconds, threads=args.threads, cpus=load
        )
        os.kill(pid, signal.SIGUSR2)
        deadline = time.monotonic() + 20
        while not profile.exists() or profile.stat().st_size == 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{contender.name}: no profile written to {profile}")
            time.sleep(0.1)
        time.sleep(0.5)  # let the dump finish
        return run
    finally:
        contender.stop()


def profile_sidecar(
    upstream: LocalNginx, args: argparse.Namespace, load: set[int] | None, proxy: set[int] | None
) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="meshkit-proxy-profile-"))
    base_file, mesh_file = tmp / "passthrough.prof", tmp / "sidecar.prof"
    base_run = profiled_run(AiohttpContender(upstream, profile=base_file), base_file, args, load, proxy)
    mesh = MeshkitProxyContender(upstream, load, profile=mesh_file)
    mesh_run = profiled_run(mesh, mesh_file, args, load, proxy)
    base_requests, mesh_requests = base_run.requests, mesh_run.requests
    base, sidecar = pstats.Stats(str(base_file)), pstats.Stats(str(mesh_file))
    print(
        f"under cProfile: aiohttp pass-through {base_run.rps:,.0f} req/s, sidecar {mesh_run.rps:,.0f} req/s"
    )
    print(f"profiled with a CPU clock over the measured {base_requests} and {mesh_requests} requests only")
    print("\nown CPU time per request by module (us/req), sidecar vs aiohttp pass-through")
    rows = compare(by_module(base, base_requests), by_module(sidecar, mesh_requests), limit=30)
    print(format_table(["module", "pass-through", "sidecar", "difference"], rows))
    print("\nsidecar: top functions by own time (tottime)")
    print(top_functions(sidecar, "tottime", 30))
    print("\nsidecar: top functions by cumulative time")
    print(top_functions(sidecar, "cumulative", 40))
    print(f"\nprofiles kept in {tmp} (open with python -m pstats)")
