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
import gc
import json
import pstats
import signal
import statistics
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from importlib.metadata import version
from typing import Any, cast

import aiohttp

from _nginx import LocalNginx
from _profile import by_module, compare, profile, top_functions
from _stats import RoundResult, Summary, format_table, ratio

SERVICE = "bench"
MESHKIT_TARGET = 0.85  # meshkit req/s >= 0.85 x raw aiohttp req/s
HEADERS = ["contender", "req/s", "p50 ms", "p99 ms", "x raw", "cpu us/req", "x raw cpu", "errors", "notes"]


@dataclass
class Contender:
    """One way of making the same request, with setup and teardown around the timed calls."""

    name: str
    note: str
    start: Callable[[], Awaitable[None]]
    call: Callable[[], Awaitable[bool]]
    close: Callable[[], Awaitable[None]]
    rounds: dict[int, list[RoundResult]] = field(default_factory=dict)
    error: str | None = None
    available: bool = True


# ---- contenders ---------------------------------------------------------------------------------


def raw_aiohttp(nginx: LocalNginx, concurrency: int) -> Contender:
    url = nginx.urls[0]
    state: dict[str, aiohttp.ClientSession] = {}

    async def start() -> None:
        state["session"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=max(100, concurrency)))
        async with state["session"].get(url) as r:
            body = await r.read()
        if body != nginx.body:
            raise RuntimeError(f"raw aiohttp: unexpected body of {len(body)} bytes")

    async def call() -> bool:
        async with state["session"].get(url) as r:
            await r.read()
            return r.status == 200

    async def close() -> None:
        await state["session"].close()

    return Contender("raw aiohttp", "pooled ClientSession, baseline", start, call, close)


def meshkit_client(nginx: LocalNginx, instances: int, without: Sequence[str] = ()) -> Contender:
    from meshkit import Request
    from meshkit.client import MeshClient

    addresses = nginx.addresses[:instances]
    client = MeshClient.static({SERVICE: addresses})
    for role in without:  # ablation: the same client with some layers taken out
        client.stack.remove(role)
    ports = {port for _, port in addresses}

    async def start() -> None:
        seen: set[int] = set()
        for _ in range(8 * instances):
            resp = await client.call(Request("GET", "/", service=SERVICE))
            if resp.status != 200 or resp.body != nginx.body or resp.instance is None:
                raise RuntimeError(f"meshkit: unexpected response {resp.status}, {len(resp.body)} bytes")
            seen.add(resp.instance.port)
        if not seen <= ports:
            raise RuntimeError(f"meshkit: answered from ports {seen}, expected some of {ports}")

    async def call() -> bool:
        resp = await client.call(Request("GET", "/", service=SERVICE))
        return resp.status == 200

    name = f"meshkit x{instances}" + "".join(f" -{role}" for role in without)
    note = f"{'default stack' if not without else ', '.join(client.stack.roles)}, {instances} instance(s)"
    return Contender(name, note, start, call, client.aclose)


def meshkit_transport(nginx: LocalNginx) -> Contender:
    """meshkit's AiohttpTransport alone, the instance set by hand: the floor under the stack."""
    from meshkit import AiohttpTransport, Request
    from meshkit.types import ServiceInstance

    transport = AiohttpTransport()
    instance = ServiceInstance("bench-0", SERVICE, "127.0.0.1", nginx.ports[0])

    async def call() -> bool:
        request = Request("GET", "/", service=SERVICE)
        request.instance = instance
        return (await transport(request)).status == 200

    async def start() -> None:
        if not await call():
            raise RuntimeError("meshkit transport: unexpected status")

    return Contender("meshkit transport", "AiohttpTransport only, no deadline", start, call, transport.aclose)


BLACKSMITH_MIDDLEWARES = "AsyncCircuitBreakerMiddleware(threshold=5, ttl=30) (no retries in blacksmith)"


def blacksmith_client(nginx: LocalNginx, pooled: bool) -> Contender:
    import blacksmith
    import httpx
    from blacksmith.domain.model.http import HTTPRawResponse
    from blacksmith.service._async.adapters.httpx import AsyncHttpxTransport, build_headers
    from blacksmith.service.http_body_serializer import serialize_response

    class Root(blacksmith.Request):
        """GET / takes no parameters."""

    blacksmith.register(SERVICE, "root", SERVICE, None, path="/", contract={"GET": (Root, None)})

    class PooledHttpxTransport(AsyncHttpxTransport):
        """blacksmith's httpx transport over one shared httpx client instead of one per request."""

        def __init__(self) -> None:
            super().__init__(verify_certificate=False)
            self.client = httpx.AsyncClient(limits=httpx.Limits(max_connections=None))

        async def __call__(self, req: Any, client_name: Any, path: Any, timeout: Any) -> Any:  # noqa: ASYNC109
            r = await self.client.request(
                req.method,
                req.url,
                params=req.querystring,
                headers=build_headers(req),
                content=req.body,
                timeout=httpx.Timeout(timeout.read, connect=timeout.connect),
            )
            resp = serialize_response(cast(HTTPRawResponse, r))
            if not r.is_success:
                raise blacksmith.HTTPError(f"{client_name} {req.method} {path} {r.status_code}", req, resp)
            return resp

    transport = PooledHttpxTransport() if pooled else None
    sd = blacksmith.AsyncStaticDiscovery({(SERVICE, None): f"http://127.0.0.1:{nginx.ports[0]}"})
    factory: blacksmith.AsyncClientFactory[Any] = blacksmith.AsyncClientFactory(sd, transport=transport)
    factory.add_middleware(blacksmith.AsyncCircuitBreakerMiddleware(threshold=5, ttl=30))

    async def start() -> None:
        await factory.initialize()
        api = await factory(SERVICE)
        box = await api.root.get({})
        resp = box.raw_result.unwrap()
        if resp.status_code != 200 or int(resp.headers.get("content-length", -1)) != len(nginx.body):
            raise RuntimeError(f"blacksmith: unexpected response {resp.status_code}")

    async def call() -> bool:
        api = await factory(SERVICE)  # discovery per call, as meshkit resolves per call
        box = await api.root.get({})
        return bool(box.is_ok())

    async def close() -> None:
        if isinstance(transport, PooledHttpxTransport):
            await transport.client.aclose()

    if pooled:
        return Contender("blacksmith pooled", "breaker; one shared httpx client", start, call, close)
    return Contender("blacksmith", "breaker; default transport (httpx client per call)", start, call, close)


# ---- measuring ----------------------------------------------------------------------------------


async def run_round(contender: Contender, concurrency: int, seconds: float) -> RoundResult:
    """`concurrency` workers calling back to back until `seconds` have passed."""
    latencies: list[float] = []
    errors = 0
    first_error: list[str] = []
    clock = time.perf_counter
    call = contender.call
    end = clock() + seconds

    async def worker() -> None:
        nonlocal errors
        while True:
            t0 = clock()
            if t0 >= end:
                return
            try:
                ok = await call()
            except Exception as exc:
                ok = False
                if not first_error:
                    first_error.append(f"{type(exc).__name__}: {exc}")
            if ok:
                latencies.append(clock() - t0)
            else:
                errors += 1

    gc.collect()
    cpu_started = time.process_time()
    started = clock()
    async with asyncio.timeout(seconds + 60), asyncio.TaskGroup() as workers:
        for _ in range(concurrency):
            workers.create_task(worker())
    elapsed = clock() - started
    result = RoundResult.of(latencies, errors, elapsed, time.process_time() - cpu_started)
    if errors and contender.error is None:
        contender.error = first_error[0] if first_error else "status not 200"
    return result


def build_contenders(nginx: LocalNginx, concurrency: int, skip: Sequence[str]) -> list[Contender]:
    factories: list[tuple[str, Callable[[], Contender]]] = [
        ("raw aiohttp", lambda: raw_aiohttp(nginx, concurrency)),
        ("meshkit x1", lambda: meshkit_client(nginx, 1)),
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
            contenders.append(_unavailable(name, exc))
    return contenders


def _unavailable(name: str, exc: BaseException) -> Contender:
    async def fail() -> None:
        raise RuntimeError(f"{type(exc).__name__}: {exc}")

    async def never() -> bool:
        return False

    async def nothing() -> None:
        return None

    contender = Contender(name, "unavailable", fail, never, nothing, available=False)
    contender.error = f"{type(exc).__name__}: {exc}"
    return contender


async def start_contender(contender: Contender, concurrency: int, warmup: float) -> bool:
    """Start and warm up (fill the pools); a contender that fails here is reported, not measured."""
    try:
        await contender.start()
        await run_round(contender, concurrency, warmup)
    except Exception as exc:
        contender.error = f"{type(exc).__name__}: {exc}"
        contender.note = "failed to start"
        traceback.print_exc(file=sys.stderr)
        return False
    contender.error = None  # warm-up errors (if any) are not the measurement's
    return True


async def measure_level(
    contenders: list[Contender], concurrency: int, rounds: int, seconds: float, warmup: float
) -> list[Contender]:
    try:
        live = [c for c in contenders if c.available and await start_contender(c, concurrency, warmup)]
        for index in range(rounds):
            shift = index % max(1, len(live))
            for contender in live[shift:] + live[:shift]:  # rotate so no one always goes first
                result = await run_round(contender, concurrency, seconds)
                contender.rounds.setdefault(concurrency, []).append(result)
    finally:
        for contender in contenders:
            try:
                await contender.close()
            except Exception as exc:
                print(f"closing {contender.name}: {exc}", file=sys.stderr)
    return contenders


# ---- reporting ----------------------------------------------------------------------------------


def summarize(contenders: Sequence[Contender], concurrency: int) -> dict[str, dict[str, Any]]:
    summaries = {c.name: Summary.of(c.rounds[concurrency]) for c in contenders if c.rounds.get(concurrency)}
    base = summaries.get("raw aiohttp")
    out: dict[str, dict[str, Any]] = {}
    for c in contenders:
        s = summaries.get(c.name)
        row: dict[str, Any] = {"note": c.note, "error": c.error}
        if s is not None:
            row |= s.as_dict()
            row["ratio"] = ratio(s.rps, base.rps) if base else None
            # raw's CPU per request over this one's: the req/s ratio a CPU-bound client would get
            row["cpu_ratio"] = ratio(base.cpu_us_per_request, s.cpu_us_per_request) if base else None
        out[c.name] = row
    return out


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


# ---- profiling ----------------------------------------------------------------------------------


async def profile_meshkit(nginx: LocalNginx, instances: int, concurrency: int, seconds: float) -> None:
    """Profile raw aiohttp and meshkit over the same calls; print meshkit's extra time by module."""
    per_module: dict[str, dict[str, float]] = {}
    for contender in (raw_aiohttp(nginx, concurrency), meshkit_client(nginx, instances)):
        await contender.start()
        await run_round(contender, concurrency, min(1.0, seconds))

        async def run(c: Contender = contender) -> int:
            return (await run_round(c, concurrency, seconds)).requests

        stats, requests = await profile(run)
        await contender.close()
        per_module[contender.name] = by_module(stats, requests)
        print(f"{contender.name}, concurrency {concurrency}: {requests} requests under cProfile")
        stats.dump_stats(f"/tmp/bench-client-{contender.name.replace(' ', '-')}.prof")
    mesh = f"meshkit x{instances}"
    rows = compare(per_module["raw aiohttp"], per_module[mesh])
    print(
        f"\nown time per request by module, us (under cProfile: read as proportions), {mesh} vs raw aiohttp"
    )
    print(format_table(["module", "raw aiohttp", mesh, "difference"], rows))
    stats = pstats.Stats(f"/tmp/bench-client-{mesh.replace(' ', '-')}.prof")
    print(f"\n{mesh}: top functions by own time\n{top_functions(stats, 'tottime', 30)}")
    print("\nprofiles: /tmp/bench-client-*.prof (python -m pstats FILE)")


# ---- ablation -----------------------------------------------------------------------------------

ABLATE_ROLES = ("interceptors", "deadline", "retry", "breaker", "outlier", "load")


async def ablate_meshkit(nginx: LocalNginx, concurrency: int, rounds: int, seconds: float) -> None:
    """meshkit's stack with one layer out at a time: each layer's real CPU cost per request."""
    makers: list[Callable[[], Contender]] = [
        lambda: raw_aiohttp(nginx, concurrency),
        lambda: meshkit_transport(nginx),
        lambda: meshkit_client(nginx, 1),
        *[lambda role=role: meshkit_client(nginx, 1, without=[role]) for role in ABLATE_ROLES],
        lambda: meshkit_client(nginx, 1, without=ABLATE_ROLES),
    ]
    contenders = []
    for make in makers:
        try:
            contenders.append(make())
        except Exception as exc:
            contenders.append(_unavailable("meshkit", exc))
    await measure_level(contenders, concurrency, rounds, seconds, 0.5)
    rows = summarize(contenders, concurrency)
    full = rows.get("meshkit x1", {}).get("cpu_us_per_request")
    table = []
    for name, row in rows.items():
        if "rps" not in row:
            table.append([name, "-", "-", "-", "-", f"{row['note']}: {row['error']}"])
            continue
        cpu = row["cpu_us_per_request"]
        saved = "-" if full is None or name == "meshkit x1" else f"{full - cpu:+.0f}"
        table.append([name, row["rps"], row["ratio"], f"{cpu:.0f}", saved, row["note"]])
    print(f"meshkit ablation over nginx, concurrency {concurrency}, {rounds} rounds x {seconds} s, medians")
    headers = ["contender", "req/s", "x raw", "cpu us/req", "cpu saved vs full", "layers"]
    print(format_table(headers, table))


async def _call_client(client: Any) -> Any:
    from meshkit import Request

    return await client.call(Request("GET", "/", service=SERVICE))


class NullTransport:
    """Answers at once without I/O, so what is timed is the stack alone."""

    def __init__(self) -> None:
        from meshkit import Response

        self.response_type = Response

    async def __call__(self, request: Any) -> Any:
        return self.response_type(200, body=b"ok", instance=request.instance)

    async def aclose(self) -> None:
        return None


async def stack_cost(calls: int, rounds: int) -> None:
    """CPU per call of the stack over a transport that does no I/O, one layer out at a time."""
    from meshkit import Request
    from meshkit.client import MeshClient

    variants: dict[str, Callable[[], Awaitable[Any]]] = {}
    null = NullTransport()
    variants["null transport alone"] = lambda: null(Request("GET", "/", service=SERVICE))
    for without in [(), *[(role,) for role in ABLATE_ROLES], ABLATE_ROLES]:
        client = MeshClient.static({SERVICE: [("127.0.0.1", 9)]}, transport=NullTransport())
        for role in without:
            client.stack.remove(role)
        name = "meshkit stack" + "".join(f" -{role}" for role in without)
        variants[name] = partial(_call_client, client)
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for index in range(rounds):
        names = list(variants)
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            call = variants[name]
            gc.collect()
            started = time.process_time()
            for _ in range(calls):
                await call()
            samples[name].append((time.process_time() - started) / calls * 1e6)
    full = statistics.median(samples["meshkit stack"])
    table = []
    for name, values in samples.items():
        cpu = statistics.median(values)
        saved = "-" if name == "meshkit stack" else f"{full - cpu:+.1f}"
        table.append([name, f"{cpu:.1f}", saved])
    print(f"\nmeshkit stack over a null transport, {rounds} rounds x {calls} calls, median CPU per call")
    print(format_table(["variant", "cpu us/call", "saved vs full stack"], table))


# ---- main ---------------------------------------------------------------------------------------


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


def event_loop_factory(choice: str) -> tuple[Callable[[], asyncio.AbstractEventLoop] | None, str]:
    if choice != "asyncio":
        try:
            import uvloop

            return uvloop.new_event_loop, f"uvloop {version('uvloop')}"
        except ImportError:
            if choice == "uvloop":
                raise
    return None, "asyncio (default loop)"


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
