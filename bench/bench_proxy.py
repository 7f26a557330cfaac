"""Sidecar proxy throughput: wrk against meshkit's proxy and /call, nginx, HAProxy and bare aiohttp.

Every contender is a server process in front of the same upstream, an nginx answering a
1 KB body from memory (`return 200`, one worker), each on its own free 127.0.0.1 port:

- upstream direct: wrk against the upstream itself, the ceiling no proxy can pass;
- nginx proxy_pass: one worker, an upstream keep-alive pool of 64, HTTP/1.1 upstream;
- haproxy: `nbthread 1`, `mode http`, `http-reuse always`;
- aiohttp pass-through: one aiohttp server and one `ClientSession` on uvloop, no mesh;
- asyncio+httptools: asyncio `Protocol`s and httptools' parsers on uvloop, no aiohttp, no
  mesh (`_rawproxy.py`), for reference: about the least CPU a Python proxy can spend;
- meshkit proxy, meshkit proxy (h1): `meshkit proxy` (the sidecar) with its default engine
  and with `--engine h1` (httptools server and client), discovering the upstream as service
  `bench` through a control plane (`GET /bench/`);
- meshkit /call: the control plane's `POST /api/v1/mesh/v2/call` (JSON in, JSON out), every
  call traced into the plane's collector (the default); "meshkit /call (0% traced)" the same
  with `--trace-sample-ratio 0`: what storing the calls' spans costs;
- uvicorn floor: /call's request answered by a bare ASGI app on uvicorn with the plane's
  settings, from memory, no proxying (`_uvicorn_floor.py`): the most `/call` could reach
  while it runs on uvicorn.

wrk (`-t1 -c32`, `--latency`) loads one contender at a time. On a machine with two cores,
wrk, the upstream and the sidecar's control plane run on the first core and the proxy
under test alone on the second (`taskset`/affinity), so a proxy is limited by its own
core; the upstream thus shares its core with wrk. Contenders are interleaved over
rounds (the order rotates) and each keeps the median of its req/s, p50 and p99; ratios
are against nginx proxy_pass measured in the same run, "added p99" is a contender's p99
minus the direct upstream's. The CPU time each proxy's process(es) spent per request
is read from /proc around every round: it barely moves when other processes steal the
CPU, so "x nginx cpu" is the steadier ratio on a shared machine; "core %" is how busy
that made the proxy's core (near 100: the proxy is the limit; well below: wrk and the
upstream on the other core are). Each answer is checked to be the upstream's body
before and after the rounds, so a contender that answers errors is never counted. wrk is a
closed loop: at saturation p99 is about connections / req/s, so the p99 target follows
throughput. Run: `.venv/bin/python bench/bench_proxy.py [--quick] [--json]`;
`--profile` runs the sidecar (and the aiohttp pass-through, as the baseline) under
cProfile for one load run and prints where the sidecar's CPU per request goes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from _nginx import LocalNginx
from _processes import usable_cpus
from _proxy_contenders import (
    AiohttpContender,
    Direct,
    HAProxyContender,
    MeshkitCallContender,
    MeshkitProxyContender,
    NginxContender,
    ProxyContender,
    RawProtocolContender,
    UvicornFloorContender,
)
from _stats import format_table, ratio
from _wrk import WrkResult, ensure_wrk, run_wrk

PROXY_TARGET = 0.5  # meshkit proxy req/s >= 0.5 x nginx proxy_pass req/s
ADDED_P99_TARGET = 2.0  # meshkit proxy's added p99 <= 2 x nginx's added p99
CALL_TARGET = 0.3  # meshkit /call req/s >= 0.3 x nginx proxy_pass req/s
BASELINE = "nginx proxy_pass"
HEADERS = ["contender", "req/s", "p50 ms", "p99 ms", "x nginx", "added p99 ms", "cpu us/req", "x nginx cpu",
           "core %", "errors", "notes"]  # fmt: skip


@dataclass(slots=True)
class Round:
    """One timed wrk run of one contender, and the CPU its process(es) spent per request."""

    wrk: WrkResult
    cpu_us: float


def cpu_layout() -> tuple[set[int] | None, set[int] | None, str]:
    """(cpus for wrk, upstream and helpers; cpus for the proxy under test; a description)."""
    cpus = sorted(usable_cpus())
    if len(cpus) < 2:
        return None, None, f"not pinned: only CPU {cpus} usable, wrk and proxies share it"
    load, proxy = {cpus[0]}, {cpus[1]}
    text = (
        f"wrk, the upstream nginx and the sidecar's control plane pinned to CPU {cpus[0]}; "
        f"the proxy under test (nginx, haproxy, aiohttp, sidecar, /call's plane) to CPU {cpus[1]}"
    )
    return load, proxy, text


def build_contenders(
    upstream: LocalNginx, load: set[int] | None, skip: Sequence[str]
) -> list[ProxyContender]:
    every = [
        Direct(upstream),
        NginxContender(upstream),
        HAProxyContender(upstream),
        AiohttpContender(upstream),
        RawProtocolContender(upstream),
        MeshkitProxyContender(upstream, plane_cpus=load),
        MeshkitProxyContender(upstream, plane_cpus=load, engine="h1"),
        MeshkitCallContender(upstream),
        MeshkitCallContender(upstream, sample_ratio=0.0),
        UvicornFloorContender(upstream),
    ]
    return [c for c in every if c.name not in skip]


def start_all(contenders: list[ProxyContender], proxy: set[int] | None) -> dict[str, str]:
    """Start and check each contender; the ones that fail are returned with their error."""
    failed: dict[str, str] = {}
    for contender in contenders:
        try:
            contender.start(proxy)
            contender.verify()
        except Exception as exc:  # a contender that cannot run is reported, never faked
            failed[contender.name] = f"{type(exc).__name__}: {exc}"[:600]
            contender.stop()
    return failed


def load_once(
    contender: ProxyContender, args: argparse.Namespace, load: set[int] | None, secs: float
) -> WrkResult:
    return run_wrk(contender.url, connections=args.connections, seconds=secs, threads=args.threads,
                   script=contender.script, cpus=load)  # fmt: skip


def measure(
    contenders: list[ProxyContender], args: argparse.Namespace, load: set[int] | None, log: Any
) -> dict[str, list[Round]]:
    for contender in contenders:
        print(f"warming up {contender.name} ({args.warmup:g} s)", file=log, flush=True)
        load_once(contender, args, load, args.warmup)
    runs: dict[str, list[Round]] = {c.name: [] for c in contenders}
    for number in range(args.rounds):
        shift = number % len(contenders)
        for contender in contenders[shift:] + contenders[:shift]:
            cpu_before = contender.cpu_seconds()
            result = load_once(contender, args, load, args.seconds)
            cpu = contender.cpu_seconds() - cpu_before
            runs[contender.name].append(
                Round(result, cpu / result.requests * 1e6 if result.requests else math.nan)
            )
            print(f"round {number + 1}: {contender.name:<22} {result.rps:>9,.0f} req/s  "
                  f"p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms  "
                  f"cpu {runs[contender.name][-1].cpu_us:6.1f} us/req", file=log, flush=True)  # fmt: skip
    return runs


def summarize(
    contenders: list[ProxyContender], runs: dict[str, list[Round]], failed: dict[str, str]
) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for contender in contenders:
        rounds = runs.get(contender.name)
        if not rounds:
            rows[contender.name] = {"note": contender.note, "error": failed.get(contender.name, "not run")}
            continue
        results = [r.wrk for r in rounds]
        rows[contender.name] = {
            "rps": statistics.median(r.rps for r in results),
            "cpu_us_per_request": statistics.median(r.cpu_us for r in rounds),
            "core_busy": statistics.median(r.cpu_us * r.wrk.rps / 1e4 for r in rounds),
            "p50_ms": statistics.median(r.p50_ms for r in results),
            "p99_ms": statistics.median(r.p99_ms for r in results),
            "errors": sum(r.errors for r in results),
            "requests": sum(r.requests for r in results),
            "rounds": [round(r.rps) for r in results],
            "note": contender.note,
        }
    base, direct = rows.get(BASELINE, {}), rows.get("upstream direct", {})
    for row in rows.values():
        if "rps" in row:
            row["ratio"] = ratio(row["rps"], base["rps"]) if "rps" in base else None
            row["cpu_ratio"] = (
                ratio(base["cpu_us_per_request"], row["cpu_us_per_request"]) if "rps" in base else None
            )
            row["added_p99_ms"] = row["p99_ms"] - direct["p99_ms"] if "p99_ms" in direct else None
    return rows


def check(
    name: str, value: float | None, target: float, at_most: bool = False, cpu_value: float | None = None
) -> dict[str, Any]:
    holds = None if value is None else (value <= target if at_most else value >= target)
    return {"check": name, "value": value, "target": target, "holds": holds, "cpu_value": cpu_value}


def proxy_checks(name: str, proxy: dict[str, Any], nginx: dict[str, Any]) -> list[dict[str, Any]]:
    """The two sidecar targets for the row `name` (req/s ratio, added p99 against nginx's)."""
    added, why = None, None
    mesh_added, nginx_added = proxy.get("added_p99_ms"), nginx.get("added_p99_ms")
    if mesh_added is not None and nginx_added is not None:
        if nginx_added > 0:
            added = max(mesh_added, 0.0) / nginx_added
        else:  # a tail spike in the direct run: there is nothing to compare against
            why = f"nginx's added p99 is {nginx_added:.2f} ms (noise in the direct run); rerun"
    p99_check = check(
        f"{name}: added p99 within {ADDED_P99_TARGET:g}x nginx's", added, ADDED_P99_TARGET, True
    )
    p99_check["why"] = why
    ratio_check = check(
        f"{name} >= {PROXY_TARGET}x nginx req/s",
        proxy.get("ratio"),
        PROXY_TARGET,
        cpu_value=proxy.get("cpu_ratio"),
    )
    return [ratio_check, p99_check]


def targets(rows: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    call, nginx = rows.get("meshkit /call", {}), rows.get(BASELINE, {})
    checks = proxy_checks("meshkit proxy", rows.get("meshkit proxy", {}), nginx)
    if "meshkit proxy (h1)" in rows:
        checks += proxy_checks("meshkit proxy (h1)", rows["meshkit proxy (h1)"], nginx)
    return [
        *checks,
        check(
            f"/call >= {CALL_TARGET}x nginx req/s",
            call.get("ratio"),
            CALL_TARGET,
            cpu_value=call.get("cpu_ratio"),
        ),
    ]


def ceiling_line(rows: dict[str, dict[str, Any]]) -> str:
    direct = rows.get("upstream direct", {}).get("rps")
    proxies = [row["rps"] for name, row in rows.items() if name != "upstream direct" and "rps" in row]
    if direct is None or not proxies:
        return "ceiling: not measured"
    factor = direct / max(proxies)
    verdict = "the upstream is not the bottleneck" if factor >= 1.5 else "WARNING: the upstream may limit"
    return f"ceiling: upstream direct {direct:,.0f} req/s = {factor:.1f}x the fastest proxy ({verdict})"


def floor_line(rows: dict[str, dict[str, Any]]) -> str:
    floor = rows.get("uvicorn floor", {})
    if floor.get("ratio") is None:
        return "uvicorn floor: not measured"
    return (f"uvicorn floor: {floor['ratio']:.2f}x nginx req/s, {floor['cpu_us_per_request']:.1f} us of CPU "
            f"per request with no proxying at all: /call (on uvicorn) cannot pass it")  # fmt: skip


def print_report(result: dict[str, Any]) -> None:
    meta, rows = result["meta"], result["rows"]
    print(f"\nproxy throughput: wrk -t{meta['threads']} -c{meta['connections']} -d{meta['seconds']:g}s "
          f"--latency, {meta['rounds']} rounds (interleaved, medians), {meta['body_bytes']} B body")  # fmt: skip
    print(f"pinning: {meta['pinning']}")
    table = []
    for name, row in rows.items():
        if "rps" in row:
            figures = [row["rps"], row["p50_ms"], row["p99_ms"], row["ratio"], row["added_p99_ms"]]
            cpu = [f"{row['cpu_us_per_request']:.1f}", row["cpu_ratio"], f"{row['core_busy']:.0f}"]
            table.append([name, *figures, *cpu, row["errors"], row["note"]])
        else:
            table.append([name, *["-"] * 9, f"UNAVAILABLE: {row['error']}"])
    print(format_table(HEADERS, [[c if c is not None else "-" for c in r] for r in table]))
    print("req/s per round: " + ", ".join(f"{n} {r['rounds']}" for n, r in rows.items() if "rounds" in r))
    print(ceiling_line(rows))
    print(floor_line(rows))
    print("\ntargets")
    for item in result["targets"]:
        verdict = {True: "PASS", False: "FAIL", None: "NOT MEASURED"}[item["holds"]]
        value = "-" if item["value"] is None else f"{item['value']:.2f}"
        by_cpu = "" if item["cpu_value"] is None else f"  (by CPU per request: {item['cpu_value']:.2f})"
        why = f"  ({item['why']})" if item.get("why") else ""
        print(f"  {item['check']:<58} {value:>6}  {verdict}{by_cpu}{why}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round of 2 s")
    parser.add_argument("--json", action="store_true", help="print machine-readable results only")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5, help="wrk duration of one round (whole seconds)")
    parser.add_argument("--warmup", type=int, default=1, help="wrk warm-up per contender (whole seconds)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--skip", nargs="*", default=[], help="contender names to leave out")
    parser.add_argument("--profile", action="store_true", help="cProfile the sidecar under load")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.seconds = 1, 2
    if not 1 <= args.rounds <= 20:
        parser.error(f"--rounds: must be in 1-20, got {args.rounds}")
    if not 1 <= args.seconds <= 60 or not 1 <= args.warmup <= 30:
        parser.error(
            f"--seconds/--warmup: must be whole seconds in 1-60/1-30, got {args.seconds}/{args.warmup}"
        )
    if not args.threads <= args.connections <= 1024:
        parser.error(f"--connections: must be in {args.threads}-1024, got {args.connections}")
    return args


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM stops every server the same way Ctrl-C does


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    log = sys.stderr if args.json else sys.stdout
    ensure_wrk()
    load, proxy_cpus, pinning = cpu_layout()
    if load:
        os.sched_setaffinity(0, load)  # this process, the upstream and the helpers it spawns
    if args.profile:
        from _proxy_profile import profile_sidecar

        with LocalNginx(body_bytes=1024) as upstream:
            profile_sidecar(upstream, args, load, proxy_cpus)
        return 0
    with LocalNginx(body_bytes=1024) as upstream:
        contenders = build_contenders(upstream, load, args.skip)
        try:
            failed = start_all(contenders, proxy_cpus)
            running = [c for c in contenders if c.name not in failed]
            runs = measure(running, args, load, log)
            for contender in running:  # still the upstream's body after the load?
                try:
                    contender.verify(within=2.0)
                except RuntimeError as exc:
                    failed[contender.name] = f"wrong answer after the rounds: {exc}"
                    runs.pop(contender.name, None)
        finally:
            for contender in contenders:
                contender.stop()
        rows = summarize(contenders, runs, failed)
    meta = {"threads": args.threads, "connections": args.connections, "seconds": args.seconds,
            "rounds": args.rounds, "warmup": args.warmup, "body_bytes": len(upstream.body),
            "pinning": pinning, "python": sys.version.split()[0]}  # fmt: skip
    result = {"meta": meta, "rows": rows, "targets": targets(rows)}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_report(result)
    return 0 if all("rps" in row for row in rows.values()) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        sys.exit(130)
