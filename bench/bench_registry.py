"""Registry benchmark: durable registrations, discovery from cache, watch fan-out, memory.

Targets (from the project's issue), each printed with a baseline measured in the same run:

- durable registrations/s, 10,000 instances in 1,000 services, batched commits: >= 2,000/s.
  Baseline: a naive sqlite3 loop, one INSERT + COMMIT per registration, same file settings
  (WAL, synchronous=FULL). etcd's own guide gives about 580/s for one client.
- discover p99 from the cache: <= 1 ms. Baseline: a plain dict lookup in the same harness.
- watch propagation p99 with 100 watchers: <= 100 ms, from the start of `register()` to
  each watcher holding the new snapshot (the durable commit included). Baseline: waking
  100 waiters of one asyncio.Event.
- RSS of a process holding 100,000 instances: <= 300 MB. Measured in child processes;
  baseline: a child holding the same 100,000 ServiceInstance objects in a plain dict.

Run: `.venv/bin/python bench/bench_registry.py [--quick]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from _stats import format_table, percentile, ratio
from meshkit.registry import CachedRegistry, EmbeddedRegistry
from meshkit.registry.store import encode_instance
from meshkit.types import ServiceInstance


def make_instance(n: int, services: int) -> ServiceInstance:
    name = f"svc-{n % services}"
    address = f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"
    return ServiceInstance(
        f"{name}-{address}-8080", name, address, 8080, ["v1", "zone-a"], {"team": "core", "build": "1234"}
    )


def ms(seconds: float) -> float:
    return seconds * 1000


async def bench_registrations(
    data_dir: Path, total: int, services: int, clients: int, rounds: int
) -> dict[str, float]:
    """Median over interleaved rounds: the disk's fsync time drifts on a shared machine."""
    items = [make_instance(n, services) for n in range(total)]
    few = items[: total // 20]
    runs: dict[str, list[float]] = {}
    for r in range(rounds):
        runs.setdefault("naive", []).append(naive_sqlite(data_dir / f"naive-{r}.db", few))
        for sync in ("FULL", "NORMAL"):
            registry = EmbeddedRegistry(data_dir / f"batched-{sync}-{r}", synchronous=sync)
            await registry.start()
            queue = iter(items)

            async def client(reg: EmbeddedRegistry, q: Iterator[ServiceInstance]) -> None:
                for inst in q:
                    await reg.register(inst)

            start = time.perf_counter()
            await asyncio.gather(*(client(registry, queue) for _ in range(clients)))
            runs.setdefault(f"batched_{sync}", []).append(total / (time.perf_counter() - start))
            start = time.perf_counter()
            for inst in few:  # one client, one registration at a time: each ack waits for its own commit
                await registry.register(inst)
            runs.setdefault(f"one_client_{sync}", []).append(len(few) / (time.perf_counter() - start))
            await registry.close()
    return {key: statistics.median(values) for key, values in runs.items()}


def naive_sqlite(path: Path, items: list[ServiceInstance]) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE instances (id TEXT PRIMARY KEY, service TEXT NOT NULL, body BLOB NOT NULL)")
    start = time.perf_counter()
    for inst in items:
        conn.execute("BEGIN")
        conn.execute(
            "INSERT OR REPLACE INTO instances VALUES (?, ?, ?)",
            (inst.id, inst.service_name, encode_instance(inst)),
        )
        conn.execute("COMMIT")
    rate = len(items) / (time.perf_counter() - start)
    conn.close()
    return rate


async def bench_discover(registry: EmbeddedRegistry, services: int, calls: int) -> dict[str, float]:
    cache = CachedRegistry(registry, rng=random.Random(1))
    names = [f"svc-{k}" for k in range(services)]
    for name in names:
        await cache.discover(name)
    plain = {name: (await registry.instances(name)).instances for name in names}
    picks = random.Random(3).choices(names, k=calls)

    async def plain_lookup(name: str) -> object:
        return plain[name]

    contenders = {"dict": plain_lookup, "resolve": cache.resolve, "discover": cache.discover}
    lat: dict[str, list[float]] = {k: [] for k in contenders}
    clock = time.perf_counter_ns
    for _ in range(3):  # interleaved rounds
        for key, fn in contenders.items():
            samples = lat[key]
            for name in picks:
                t0 = clock()
                await fn(name)
                samples.append(clock() - t0)
    for task in [e.task for e in cache._entries.values() if e.task is not None]:
        task.cancel()
    out = {}
    for key, samples in lat.items():
        samples.sort()
        out[f"{key}_p50_us"] = percentile(samples, 50) / 1000
        out[f"{key}_p99_us"] = percentile(samples, 99) / 1000
    return out


async def bench_watch(registry: EmbeddedRegistry, watchers: int, changes: int) -> dict[str, float]:
    seen: list[float] = []
    target = {"rev": 0}
    arrived = asyncio.Event()
    count = {"n": 0}

    async def watcher() -> None:
        async for snap in registry.watch("hot"):
            if snap.revision >= target["rev"] > 0:
                seen.append(time.perf_counter())
                count["n"] += 1
                if count["n"] == watchers:
                    arrived.set()

    tasks = [asyncio.create_task(watcher()) for _ in range(watchers)]
    await asyncio.sleep(0.05)
    latencies: list[float] = []
    for k in range(changes):
        seen.clear()
        count["n"] = 0
        arrived.clear()
        target["rev"] = registry.revision + 1
        t0 = time.perf_counter()
        await registry.register(ServiceInstance(f"hot-{k}", "hot", "10.9.9.9", 1 + k))
        await arrived.wait()
        latencies.extend(t - t0 for t in seen)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    latencies.sort()
    base = await event_fanout(watchers, changes)
    return {
        "p50_ms": ms(percentile(latencies, 50)),
        "p99_ms": ms(percentile(latencies, 99)),
        "base_p50_ms": ms(percentile(base, 50)),
        "base_p99_ms": ms(percentile(base, 99)),
    }


async def event_fanout(waiters: int, rounds: int) -> list[float]:
    latencies: list[float] = []
    for _ in range(rounds):
        event = asyncio.Event()

        async def wait(ev: asyncio.Event = event) -> float:
            await ev.wait()
            return time.perf_counter()

        tasks = [asyncio.create_task(wait()) for _ in range(waiters)]
        await asyncio.sleep(0)
        t0 = time.perf_counter()
        event.set()
        latencies.extend(t - t0 for t in await asyncio.gather(*tasks))
    latencies.sort()
    return latencies


# -- memory, measured in child processes so each starts from a clean interpreter


def rss_child(kind: str, data_dir: str, total: int) -> None:
    async def run() -> dict[str, float]:
        services = max(1, total // 10)
        start = time.perf_counter()
        if kind == "plain":
            held = {i.id: i for i in (make_instance(n, services) for n in range(total))}
            assert len(held) == total
        elif kind == "register":
            async with EmbeddedRegistry(data_dir) as reg:
                items = iter(make_instance(n, services) for n in range(total))

                async def client() -> None:
                    for inst in items:
                        await reg.register(inst)

                await asyncio.gather(*(client() for _ in range(200)))
                return {**read_rss(), "seconds": time.perf_counter() - start}
        elif kind == "reopen":
            async with EmbeddedRegistry(data_dir) as reg:
                assert len(await reg.all_instances()) == total
                return {**read_rss(), "seconds": time.perf_counter() - start}
        return {**read_rss(), "seconds": time.perf_counter() - start}

    print(json.dumps(asyncio.run(run())))


def read_rss() -> dict[str, float]:
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return {key: int(fields[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM")}  # MiB


def spawn(kind: str, data_dir: Path, total: int) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--rss-child", kind, str(data_dir), str(total)]
    result: dict[str, float] = json.loads(
        subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    )
    return result


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


async def main(quick: bool) -> None:
    total, services = (2_000, 200) if quick else (10_000, 1_000)
    rss_total = 10_000 if quick else 100_000
    with tempfile.TemporaryDirectory(prefix="bench-registry-") as tmp:
        data = Path(tmp)
        reg = await bench_registrations(data, total, services, clients=100, rounds=1 if quick else 3)
        registry = EmbeddedRegistry(data / "batched-FULL-0")
        await registry.start()
        disc = await bench_discover(registry, services, calls=20_000 if quick else 100_000)
        watch = await bench_watch(registry, watchers=100, changes=50 if quick else 200)
        await registry.close()
        mem_plain = spawn("plain", data / "rss", rss_total)
        mem_reg = spawn("register", data / "rss", rss_total)
        mem_reopen = spawn("reopen", data / "rss", rss_total)

    print(
        f"registry benchmark: {total:,} instances in {services:,} services; Python {sys.version.split()[0]}"
    )
    print(
        f"registrations/s: median of interleaved rounds; the one-client and naive rows write {total // 20:,}\n"
    )
    print(format_table(
        ["registrations/s (durable)", "value", "x naive", "target", ""],
        [
            ["batched, synchronous=FULL, 100 clients", reg["batched_FULL"], ratio(reg["batched_FULL"], reg["naive"]),
             ">= 2,000", verdict(reg["batched_FULL"] >= 2000)],
            ["batched, synchronous=NORMAL, 100 clients", reg["batched_NORMAL"], ratio(reg["batched_NORMAL"], reg["naive"]), "", ""],
            ["one client, synchronous=FULL", reg["one_client_FULL"], ratio(reg["one_client_FULL"], reg["naive"]), "", ""],
            ["one client, synchronous=NORMAL", reg["one_client_NORMAL"], ratio(reg["one_client_NORMAL"], reg["naive"]), "", ""],
            ["baseline: naive sqlite3, commit per insert (FULL)", reg["naive"], 1.0, "", ""],
        ],
    ))  # fmt: skip
    print()
    print(format_table(
        ["discover from cache (us)", "p50", "p99", "p99 x dict", "target p99", ""],
        [
            ["CachedRegistry.discover()", disc["discover_p50_us"], disc["discover_p99_us"],
             ratio(disc["discover_p99_us"], disc["dict_p99_us"]), "<= 1,000", verdict(disc["discover_p99_us"] <= 1000)],
            ["CachedRegistry.resolve()", disc["resolve_p50_us"], disc["resolve_p99_us"],
             ratio(disc["resolve_p99_us"], disc["dict_p99_us"]), "", ""],
            ["baseline: await a dict lookup", disc["dict_p50_us"], disc["dict_p99_us"], 1.0, "", ""],
        ],
    ))  # fmt: skip
    print()
    print(format_table(
        ["watch propagation, 100 watchers (ms)", "p50", "p99", "p99 x base", "target p99", ""],
        [
            ["register() start -> every watcher has it", watch["p50_ms"], watch["p99_ms"],
             ratio(watch["p99_ms"], watch["base_p99_ms"]), "<= 100", verdict(watch["p99_ms"] <= 100)],
            ["baseline: asyncio.Event wakes 100 waiters", watch["base_p50_ms"], watch["base_p99_ms"], 1.0, "", ""],
        ],
    ))  # fmt: skip
    print()
    print(format_table(
        [f"memory, {rss_total:,} instances (MiB)", "RSS", "peak", "x plain", "seconds", "target", ""],
        [
            ["EmbeddedRegistry after registering (SQLite)", mem_reg["VmRSS"], mem_reg["VmHWM"],
             ratio(mem_reg["VmRSS"], mem_plain["VmRSS"]), mem_reg["seconds"], "<= 300", verdict(mem_reg["VmHWM"] <= 300)],
            ["EmbeddedRegistry reopened (load from disk)", mem_reopen["VmRSS"], mem_reopen["VmHWM"],
             ratio(mem_reopen["VmRSS"], mem_plain["VmRSS"]), mem_reopen["seconds"], "<= 300",
             verdict(mem_reopen["VmHWM"] <= 300)],
            ["baseline: the instances in a plain dict", mem_plain["VmRSS"], mem_plain["VmHWM"], 1.0,
             mem_plain["seconds"], "", ""],
        ],
    ))  # fmt: skip


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--rss-child":
        rss_child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    asyncio.run(main(parser.parse_args().quick))
