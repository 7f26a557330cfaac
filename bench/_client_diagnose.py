"""Diagnosis of meshkit's client cost: where its time per request goes.

`stack_cost()` times the stack over a transport that does no I/O, one layer out at a
time (the layers' own CPU, steady even on a busy machine); `ablate_meshkit()` does the
same over nginx (what each layer costs with real I/O); `profile_meshkit()` profiles
raw aiohttp and meshkit with cProfile and prints meshkit's extra time by module.
"""

from __future__ import annotations

import gc
import pstats
import statistics
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from _client_contenders import SERVICE, meshkit_client, meshkit_transport, raw_aiohttp
from _nginx import LocalNginx
from _profile import by_module, compare, profile, top_functions
from _rounds import Contender, measure_level, run_round, summarize, unavailable
from _stats import format_table


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
            contenders.append(unavailable("meshkit", exc))
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
