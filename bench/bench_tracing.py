"""Tracing cost: the meshkit client with tracing off, and at 100%, 10% and 0% sampling.

The issue's target: "client throughput at 100% sampling >= 0.85x the same run with
tracing off". Every contender is `MeshClient.static(...)`'s default stack over one local
nginx (one worker, 127.0.0.1, a 1 KB body from memory), in one process on one event loop
(uvloop when installed), for each transport (`AiohttpTransport`, the default, and
`H1Transport`); see `_tracing_contenders.py`:

- off: no tracer, the baseline for its transport;
- 100% / 10%: `Tracer("bench", sample_ratio=r)` whose spans go through the tracer's
  `BatchingSpanProcessor` (export on its own thread) to an exporter that reads every field
  an OTLP exporter encodes from each span, counts them and keeps none
  (`_tracing_contenders.CountingMemoryExporter`);
- 0%: nothing sampled, so no span is exported: ids are made and trace headers injected
  (propagation only);
- 100% OTLP: 100% exported as OTLP/HTTP protobuf to a `/v1/traces` location on the same
  nginx (informative: the protobuf encoding on the export thread costs this process CPU).

All contenders of a concurrency level run interleaved in rounds (the order rotates each
round) and each keeps its median; ratios are against "off" on the same transport. The
process's CPU time per request (export thread included) is printed too: on this shared
machine it moves less than req/s, and "x off cpu" is the ratio a CPU-bound client would
reach. The target line is judged by both. Every loop is bounded by time.

`--pin` runs nginx on the first usable CPU and this client on the second (by default the
scheduler places them). Run: `.venv/bin/python bench/bench_tracing.py [--quick] [--json]
[--pin]` (about 2.5 minutes; `--quick` about 25 s); `--profile` compares "off" and "100%"
under cProfile, by module.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from _nginx import LocalNginx
from _processes import pinned_to, usable_cpus
from _profile import by_module, compare, profile, top_functions
from _rounds import event_loop_factory, measure_level, run_round, summarize
from _stats import format_table
from _tracing_contenders import MODES, OTLP_LOCATION, TRANSPORTS, build, contender_name, traced_client

TARGET = 0.85  # 100% sampling req/s >= 0.85 x tracing off, same transport
HEADERS = ["contender", "req/s", "p50 ms", "p99 ms", "x off", "cpu us/req", "x off cpu", "errors", "notes"]


def targets(levels: dict[int, dict[str, dict[str, Any]]], transports: Sequence[str]) -> list[dict[str, Any]]:
    checks: list[dict[str, Any]] = []
    for concurrency, rows in levels.items():
        for transport in transports:
            row = rows.get(contender_name("100%", transport), {})
            rps, cpu = row.get("ratio"), row.get("cpu_ratio")
            checks.append(
                {
                    "concurrency": concurrency,
                    "transport": transport,
                    "check": f"100% sampling >= {TARGET}x off",
                    "rps_ratio": rps,
                    "cpu_ratio": cpu,
                    "rps_holds": None if rps is None else rps >= TARGET,
                    "cpu_holds": None if cpu is None else cpu >= TARGET,
                    "paired_rps_ratio": row.get("paired_ratio"),
                    "paired_cpu_ratio": row.get("paired_cpu_ratio"),
                }
            )
    return checks


def print_report(
    meta: dict[str, Any], levels: dict[int, dict[str, dict[str, Any]]], checks: list[Any]
) -> None:
    print(
        f"meshkit client, tracing off vs on, local nginx ({meta['body_bytes']} B body), loop: {meta['loop']}, "
        f"{meta['rounds']} rounds x {meta['seconds']} s per contender and level, median per contender"
    )
    for concurrency, rows in levels.items():
        print(f"\nconcurrency {concurrency}")
        table = []
        for name, row in rows.items():
            if "rps" in row:
                cpu = f"{row['cpu_us_per_request']:.0f}"
                figures = [row["rps"], row["p50_ms"], row["p99_ms"], row["ratio"], cpu, row["cpu_ratio"]]
                table.append([name, *figures, row["errors"], row["note"]])
            else:
                table.append([name, "-", "-", "-", "-", "-", "-", "-", f"{row['note']}: {row['error']}"])
        print(format_table(HEADERS, table))
        spread = ", ".join(f"{n} {row['rounds']}" for n, row in rows.items() if "rounds" in row)
        print(f"req/s per round: {spread}")
        for name, row in rows.items():
            if row.get("error") and "rps" in row:
                print(f"first error of {name}: {row['error']}")
    print("\ntarget: 100% sampling >= 0.85x off (same transport, same run)")
    verdict = {True: "PASS", False: "FAIL", None: "not measured"}
    for c in checks:
        rps = "-" if c["rps_ratio"] is None else f"{c['rps_ratio']:.2f}"
        cpu = "-" if c["cpu_ratio"] is None else f"{c['cpu_ratio']:.2f}"
        paired = " / ".join(
            "-" if c[key] is None else f"{c[key]:.2f}" for key in ("paired_rps_ratio", "paired_cpu_ratio")
        )
        print(
            f"  c={c['concurrency']:<3} {c['transport']:<8} by req/s {rps:>5} {verdict[c['rps_holds']]:<5}"
            f"  by CPU/request {cpu:>5} {verdict[c['cpu_holds']]:<5}  round by round (req/s / CPU) {paired}"
        )


async def run_all(args: argparse.Namespace, nginx: LocalNginx, loop_name: str) -> dict[str, Any]:
    warmup = 0.2 if args.quick else 0.5
    levels: dict[int, dict[str, dict[str, Any]]] = {}
    for concurrency in args.concurrency:
        contenders = build(nginx, args.modes, args.transports)
        await measure_level(contenders, concurrency, args.rounds, args.seconds, warmup)
        rows: dict[str, dict[str, Any]] = {}
        for transport in args.transports:
            mine = [c for c in contenders if c.name.endswith(f"[{transport}]")]
            rows |= summarize(mine, concurrency, baseline=contender_name("off", transport))
        levels[concurrency] = rows
    meta = {
        "loop": loop_name,
        "python": sys.version.split()[0],
        "body_bytes": len(nginx.body),
        "rounds": args.rounds,
        "seconds": args.seconds,
        "exporter": "BatchingSpanProcessor (defaults) -> InMemorySpanExporter(max_spans=10000)",
    }
    return {"meta": meta, "levels": levels, "targets": targets(levels, args.transports)}


async def profile_tracing(
    nginx: LocalNginx, transport: str, traced: str, concurrency: int, seconds: float
) -> None:
    """Profile "off" and `traced` over the same calls; print the extra time by module and function."""
    per_module: dict[str, dict[str, float]] = {}
    for mode in ("off", traced):
        contender = traced_client(nginx, mode, transport)
        await contender.start()
        await run_round(contender, concurrency, min(1.0, seconds))

        async def run(c: Any = contender) -> int:
            return int((await run_round(c, concurrency, seconds)).requests)

        stats, requests = await profile(run)
        await contender.close()
        per_module[mode] = by_module(stats, requests)
        print(f"{contender.name}, concurrency {concurrency}: {requests} requests under cProfile")
        if mode == traced:
            print(f"top functions by own time\n{top_functions(stats, 'tottime', 30)}")
    print("\nown time per request by module, us (under cProfile: read as proportions)")
    rows = compare(per_module["off"], per_module[traced])
    print(format_table(["module", "off", traced, "difference"], rows))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round of 0.5 s per contender")
    parser.add_argument("--json", action="store_true", help="print machine-readable results only")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=1.5, help="duration of one round")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--transports", nargs="+", choices=TRANSPORTS, default=list(TRANSPORTS))
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    parser.add_argument("--loop", choices=["auto", "uvloop", "asyncio"], default="auto")
    parser.add_argument(
        "--profile", action="store_true", help="cProfile 'off' and the first other --modes (first transport)"
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="nginx on the first usable CPU, this client (all its threads) on the second",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.seconds = 1, 0.5
    if args.rounds < 1:
        parser.error(f"--rounds: must be an integer >= 1, got {args.rounds}")
    if not 0 < args.seconds <= 30:
        parser.error(f"--seconds: must be in (0, 30], got {args.seconds}")
    if any(c < 1 or c > 1024 for c in args.concurrency):
        parser.error(f"--concurrency: each must be in 1-1024, got {args.concurrency}")
    if "off" not in args.modes:
        parser.error("--modes: must include 'off' (the baseline)")
    return args


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM stops nginx the same way Ctrl-C does


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    loop_factory, loop_name = event_loop_factory(args.loop)
    nginx = LocalNginx(body_bytes=1024, extra_locations=OTLP_LOCATION)
    cpus = sorted(usable_cpus())
    if args.pin and len(cpus) < 2:
        print(f"--pin: needs two usable CPUs, this process has {cpus}", file=sys.stderr)
        return 2
    with contextlib.ExitStack() as stack:
        with pinned_to({cpus[0]} if args.pin else None):
            stack.enter_context(nginx)
        if args.pin:
            os.sched_setaffinity(0, {cpus[1]})  # the client's loop and export threads share one core
        runner = stack.enter_context(asyncio.Runner(loop_factory=loop_factory))
        if args.profile:
            traced = next((m for m in args.modes if m != "off"), "100%")
            profile = profile_tracing(nginx, args.transports[0], traced, max(args.concurrency), args.seconds)
            runner.run(profile)
            return 0
        results = runner.run(run_all(args, nginx, loop_name))
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print_report(results["meta"], results["levels"], results["targets"])
    measured = all("rps" in row for rows in results["levels"].values() for row in rows.values())
    return 0 if measured else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; nginx stopped", file=sys.stderr)
        sys.exit(130)
