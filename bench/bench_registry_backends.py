"""Registry backends side by side: registration rate and watch latency, embedded vs etcd, in one run.

Contenders, all in this process and on one event loop:

- embedded (sqlite): `EmbeddedRegistry` on a temporary data directory, synchronous=FULL
  (every batch fsynced); the baseline every ratio is taken against.
- embedded (memory): the same registry with nothing persisted, to show what the disk costs.
- etcd: `EtcdRegistry` on one local etcd member (Debian's /usr/bin/etcd, started here on free
  loopback ports in a temporary directory, stopped at the end), which fsyncs its WAL too.

Registration rate: `--concurrency` tasks register distinct instances for `--seconds`.
Watch latency: one task watches a service while another registers one instance at a time;
the latency is from the start of `register()` until the watch yields a snapshot holding
the new instance (what a client following the registry waits), over at most `--rounds`
rounds or `--seconds`. Every loop is bounded by time. Figures depend on the disk's fsync
speed and the shared machine's load; the ratios are what to compare.
Run: `.venv/bin/python bench/bench_registry_backends.py [--seconds 3] [--concurrency 64] [--json]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the etcd member helper lives with the tests

from tests.registry.etcd.cluster import EtcdCluster  # noqa: E402

from meshkit.registry import EmbeddedRegistry, Registry  # noqa: E402
from meshkit.registry.etcd import EtcdRegistry  # noqa: E402
from meshkit.types import ServiceInstance  # noqa: E402


async def registration_rate(registry: Registry, seconds: float, concurrency: int) -> dict[str, float]:
    ids = itertools.count()
    done = 0
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            n = next(ids)
            started = time.perf_counter()
            await registry.register(ServiceInstance(f"reg-{n}", "bench-reg", "10.0.0.1", 1 + n % 65535))
            latencies.append(time.perf_counter() - started)
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {"per_s": done / elapsed, "p50_ms": _ms(latencies, 0.5), "p99_ms": _ms(latencies, 0.99)}


async def watch_latency(registry: Registry, seconds: float, rounds: int) -> dict[str, float]:
    watch = registry.watch("bench-watch")
    latencies: list[float] = []
    try:
        await anext(watch)
        deadline = time.perf_counter() + seconds
        for n in range(rounds):
            if time.perf_counter() >= deadline:
                break
            sid = f"watch-{n}"
            started = time.perf_counter()
            await registry.register(ServiceInstance(sid, "bench-watch", "10.0.0.2", 1 + n))
            while not any(
                i.service_id == sid for i in (await asyncio.wait_for(anext(watch), 10.0)).instances
            ):
                pass
            latencies.append(time.perf_counter() - started)
    finally:
        await watch.aclose()  # type: ignore[attr-defined]
    return {"rounds": len(latencies), "p50_ms": _ms(latencies, 0.5), "p99_ms": _ms(latencies, 0.99)}


def _ms(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0] * 1000
    return statistics.quantiles(values, n=100, method="inclusive")[min(98, int(q * 100) - 1)] * 1000


@contextlib.asynccontextmanager
async def etcd_registry(tmp: Path) -> AsyncIterator[Registry]:
    cluster = EtcdCluster(tmp / "etcd", size=1)
    try:
        cluster.start()
        registry = EtcdRegistry(cluster.endpoints, reap_interval=None)
        await registry.start()
        try:
            yield registry
        finally:
            await registry.close()
    finally:
        cluster.close()


@contextlib.asynccontextmanager
async def embedded(data_dir: Path | None) -> AsyncIterator[Registry]:
    registry = EmbeddedRegistry(data_dir)
    await registry.start()
    try:
        yield registry
    finally:
        await registry.close()


async def main(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="meshkit-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        contenders: list[tuple[str, Callable[[], contextlib.AbstractAsyncContextManager[Registry]]]] = [
            ("embedded (sqlite)", lambda: embedded(tmp / "sqlite")),
            ("embedded (memory)", lambda: embedded(None)),
            ("etcd (1 member)", lambda: etcd_registry(tmp)),
        ]
        for name, open_registry in contenders:
            async with open_registry() as registry:
                rate = await registration_rate(registry, args.seconds, args.concurrency)
                watch = await watch_latency(registry, args.seconds, args.rounds)
            results[name] = {"register": rate, "watch": watch}
            print(f"  {name}: done", file=sys.stderr)
    return results


def report(results: dict[str, Any], args: argparse.Namespace) -> None:
    base = results["embedded (sqlite)"]
    print(f"registry backends: {args.seconds:g} s per phase, {args.concurrency} concurrent registrations")
    header = f"{'backend':<20}{'reg/s':>10}{'reg p50 ms':>12}{'reg p99 ms':>12}{'x sqlite':>10}"
    header += f"{'watch p50 ms':>14}{'watch p99 ms':>14}{'x sqlite':>10}"
    print(header)
    for name, r in results.items():
        reg, watch = r["register"], r["watch"]
        print(
            f"{name:<20}{reg['per_s']:>10.0f}{reg['p50_ms']:>12.2f}{reg['p99_ms']:>12.2f}"
            f"{reg['per_s'] / base['register']['per_s']:>10.2f}"
            f"{watch['p50_ms']:>14.2f}{watch['p99_ms']:>14.2f}"
            f"{watch['p50_ms'] / base['watch']['p50_ms']:>10.2f}"
        )
    etcd = results["etcd (1 member)"]
    print(
        f"etcd / embedded (sqlite): registration rate x{etcd['register']['per_s'] / base['register']['per_s']:.2f}, "
        f"watch latency p50 x{etcd['watch']['p50_ms'] / base['watch']['p50_ms']:.2f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each phase (default 3)")
    parser.add_argument("--concurrency", type=int, default=64, help="concurrent registrations (default 64)")
    parser.add_argument("--rounds", type=int, default=300, help="watch latency rounds at most (default 300)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    arguments = parser.parse_args()
    if arguments.seconds <= 0 or arguments.concurrency < 1 or arguments.rounds < 1:
        parser.error("--seconds must be > 0, --concurrency and --rounds >= 1")
    figures = asyncio.run(main(arguments))
    print(json.dumps(figures, indent=2)) if arguments.json else report(figures, arguments)
