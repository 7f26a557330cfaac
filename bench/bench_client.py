"""Client throughput: meshkit's default stack against raw aiohttp and blacksmith.

All contenders call one local nginx (one worker, 127.0.0.1, a 1 KB body from memory)
in the same process and on the same event loop (uvloop when installed):

- raw aiohttp: one pooled `ClientSession`, `async with session.get(url) as r: await r.read()`;
  the baseline every ratio is taken against.
- meshkit x1 / x3: `MeshClient.static(...)` with its default stack (discovery, deadline,
  retry, balancer, breaker, outlier, load) over one instance, and over three (three
  listen ports of the same nginx worker, so the server's capacity is the same).
- blacksmith: its async client with static discovery, its default transport and its
  circuit breaker middleware (blacksmith has no retries). Its default transport opens a
  new httpx client (and connection) per request, so "blacksmith pooled" also runs it
  over one shared httpx client, to compare the stacks and not only the pooling.

Shared machines are noisy, so each concurrency level runs several rounds alternating
the contenders (the order rotates each round) and keeps each one's median; the
process's CPU time per request is printed too, the steadier figure when other
processes steal the CPU ("x raw cpu" is the req/s ratio a CPU-bound client would
reach). Every loop is bounded by time. Run: `.venv/bin/python bench/bench_client.py [--quick] [--json]`;
`--ablate` measures meshkit with one layer out at a time (each layer's CPU per request);
`--profile` runs raw aiohttp and meshkit under cProfile and prints where meshkit's
extra time per request goes, module by module.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp

from _client_contenders import BLACKSMITH_MIDDLEWARES, blacksmith_client, meshkit_client, raw_aiohttp
from _client_diagnose import ablate_meshkit, profile_meshkit, stack_cost
from _nginx import LocalNginx
from _rounds import Contender, event_loop_factory, measure_level, summarize, unavailable
from _stats import format_table, ratio

MESHKIT_TARGET = 0.85  # meshkit req/s >= 0.85 x raw aiohttp req/s
HEADERS = ["contender", "req/s", "p50 ms", "p99 ms", "x raw", "cpu us/req", "x raw cpu", "errors", "notes"]


def build_contenders(nginx: LocalNginx, concurrency: int, skip: Sequence[str]) -> list[Contender]:
    factories: list[tuple[str, Callable[[], Contender]]] = [
        ("raw aiohttp", lambda: raw_aiohttp(nginx, concurrency)),
        ("meshkit x1", lambda: meshkit_client(nginx, 1)),
        ("meshkit x1 (h1 transport)", lambda: meshkit_client(nginx, 1, transport="h1")),
        ("meshkit x3", lambda: meshkit_client(nginx, 3)),
        ("blacksmith", lambda: blacksmith_client(nginx, pooled=False)),
        ("blacksmith pooled", lambda: blacksmith_client(nginx, pooled=True)),
    ]
    contenders: list[Contender] = []
    for name, make in factories:
        if name in skip:
            continue
        try:
            contenders.append(make())
        except Exception as exc:  # a contender that cannot even be built is reported, never faked
            contenders.append(unavailable(name, exc))
    return contenders


def targets(levels: dict[int, dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    checks: list[dict[str, Any]] = []
    for concurrency, rows in levels.items():
        for mesh in ("meshkit x1", "meshkit x3"):
            m = rows.get(mesh, {})
            r = m.get("ratio")
            checks.append(
                {
                    "concurrency": concurrency,
                    "check": f"{mesh}/raw >= {MESHKIT_TARGET}",
                    "value": r,
                    "holds": None if r is None else r >= MESHKIT_TARGET,
                    "cpu_value": m.get("cpu_ratio"),
                }
            )
            b = rows.get("blacksmith", {})
            if "rps" in m and "rps" in b:
                value, holds = ratio(m["rps"], b["rps"]), m["rps"] > b["rps"]
            else:
                value, holds = None, None
            checks.append(
                {"concurrency": concurrency, "check": f"{mesh} > blacksmith", "value": value, "holds": holds}
            )
    return checks


def print_report(
    meta: dict[str, Any], levels: dict[int, dict[str, dict[str, Any]]], checks: list[dict[str, Any]]
) -> None:
    print(
        f"client throughput vs local nginx ({meta['body_bytes']} B body), loop: {meta['loop']}, "
        f"{meta['rounds']} rounds x {meta['seconds']} s per contender and level, median per contender"
    )
    print(f"blacksmith {meta['blacksmith']}: {meta['blacksmith_middlewares']}")
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
    print("\ntargets")
    for check in checks:
        holds = {True: "yes", False: "NO", None: "not measured"}[check["holds"]]
        value = "-" if check["value"] is None else f"{check['value']:.2f}"
        cpu_value = check.get("cpu_value")
        by_cpu = "" if cpu_value is None else f"  (by CPU per request: {cpu_value:.2f})"
        print(f"  c={check['concurrency']:<3} {check['check']:<28} {value:>6}  {holds}{by_cpu}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round of 0.5 s per contender")
    parser.add_argument("--json", action="store_true", help="print machine-readable results only")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0, help="duration of one round")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--loop", choices=["auto", "uvloop", "asyncio"], default="auto")
    parser.add_argument("--skip", nargs="*", default=[], help="contender names to leave out")
    parser.add_argument(
        "--profile", action="store_true", help="profile raw aiohttp and meshkit with cProfile"
    )
    parser.add_argument("--instances", type=int, default=1, help="meshkit instances when profiling")
    parser.add_argument("--ablate", action="store_true", help="meshkit with one layer out at a time")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.seconds = 1, 0.5
    if args.rounds < 1:
        parser.error(f"--rounds: must be an integer >= 1, got {args.rounds}")
    if not 0 < args.seconds <= 30:
        parser.error(f"--seconds: must be in (0, 30], got {args.seconds}")
    if any(c < 1 or c > 1024 for c in args.concurrency):
        parser.error(f"--concurrency: each must be in 1-1024, got {args.concurrency}")
    return args


async def run_all(args: argparse.Namespace, nginx: LocalNginx, loop_name: str) -> dict[str, Any]:
    import blacksmith

    warmup = 0.2 if args.quick else 0.5
    levels: dict[int, dict[str, dict[str, Any]]] = {}
    for concurrency in args.concurrency:
        contenders = build_contenders(nginx, concurrency, args.skip)
        await measure_level(contenders, concurrency, args.rounds, args.seconds, warmup)
        levels[concurrency] = summarize(contenders, concurrency)
    meta = {
        "loop": loop_name,
        "python": sys.version.split()[0],
        "body_bytes": len(nginx.body),
        "rounds": args.rounds,
        "seconds": args.seconds,
        "blacksmith": blacksmith.__version__,
        "blacksmith_middlewares": BLACKSMITH_MIDDLEWARES,
        "aiohttp": aiohttp.__version__,
    }
    return {"meta": meta, "levels": levels, "targets": targets(levels)}


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM stops nginx the same way Ctrl-C does


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    loop_factory, loop_name = event_loop_factory(args.loop)
    with LocalNginx(ports=3, body_bytes=1024) as nginx, asyncio.Runner(loop_factory=loop_factory) as runner:
        if args.profile:
            runner.run(profile_meshkit(nginx, args.instances, max(args.concurrency), args.seconds))
            return 0
        if args.ablate:
            runner.run(stack_cost(2_000 if args.quick else 20_000, args.rounds))
            runner.run(ablate_meshkit(nginx, max(args.concurrency), args.rounds, args.seconds))
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
