"""Trace collector: ingest spans/s on one core, and search latency over 1,000,000 stored spans.

Targets (from meshkit's issue): ingest >= 10,000 spans/s on one core (the OpenTelemetry
Collector's sizing guide says about 12,000 per core); search p99 <= 100 ms over 1,000,000
spans. Baselines measured in the same run:
- ingest: protobuf decode alone (`ParseFromString`, the floor any OTLP receiver pays) and a
  raw `executemany` of the same rows into the same indexed table (the floor SQLite sets);
- search: the naive query (GROUP BY trace over every matching span, no index plan);
- in-process export (the plane's own `/call` spans, `CollectorSpanExporter`): meshkit client
  spans turned into stored records from their fields, against the same spans read through
  the SDK's `ReadableSpan` properties (`_readable_record`, what any other span takes).
Ingest runs on one thread with a file store (WAL) in a temporary directory; CPU seconds
per span are printed too, as they move less than wall time on a shared machine.

Run: .venv/bin/python bench/bench_collector.py [--spans 1000000] [--queries 300] [--export-calls N]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from meshkit.clock import SYSTEM_CLOCK
from meshkit.plane.collector import SpanStore, TraceCollector
from meshkit.plane.collector.otlp import decode_traces
from meshkit.plane.collector.record import make_record
from meshkit.plane.collector.search import TraceQuery
from meshkit.plane.collector.store import INSERT, SCHEMA, span_row

SERVICES = [f"svc-{i:02d}" for i in range(20)]
OPERATIONS = [f"GET /api/v1/resource/{i}" for i in range(50)]
PB = "application/x-protobuf"
BATCH = 512  # the OTel SDK BatchSpanProcessor's default max_export_batch_size
SENDERS = 16


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def make_bodies(n_spans: int, rng: random.Random, now_ns: int) -> list[bytes]:
    """Export requests of BATCH spans from 4 services, 6 attributes a span, sent as they end
    (spans arrive roughly in time order, as from BatchSpanProcessors; a batch each 50 ms)."""
    bodies = []
    for b in range(n_spans // BATCH):
        request = ExportTraceServiceRequest()
        per_service = BATCH // 4
        for s in range(4):
            rs = request.resource_spans.add()
            rs.resource.attributes.add(key="service.name").value.string_value = SERVICES[(b + s) % 20]
            spans = rs.scope_spans.add().spans
            for i in range(per_service):
                start = now_ns + b * 50_000_000 - rng.randrange(2_000_000_000)  # sent within 2 s
                attrs = {
                    "http.method": "GET",
                    "http.route": OPERATIONS[i % 50],
                    "http.status_code": 200,
                    "user.id": f"u{rng.randrange(1000)}",
                    "peer.service": SERVICES[(s + 1) % 20],
                    "net.peer.port": 8080,
                }
                spans.append(
                    Span(
                        trace_id=rng.randbytes(16),
                        span_id=rng.randbytes(8),
                        parent_span_id=rng.randbytes(8) if i % 10 else b"",
                        name=OPERATIONS[i % 50],
                        kind=2 + i % 2,  # type: ignore[arg-type]
                        start_time_unix_nano=start,
                        end_time_unix_nano=start + rng.randrange(100_000, 500_000_000),
                        attributes=[KeyValue(key=k, value=_any(v)) for k, v in attrs.items()],
                        status=Status(code=Status.STATUS_CODE_ERROR if rng.random() < 0.01 else 0),  # type: ignore[arg-type]
                    )
                )
        bodies.append(request.SerializeToString())
    return bodies


def _any(value: object) -> AnyValue:
    return AnyValue(int_value=value) if isinstance(value, int) else AnyValue(string_value=str(value))


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def bench_ingest(n_spans: int, tmp: Path) -> None:
    bodies = make_bodies(n_spans, random.Random(7), int(SYSTEM_CLOCK.time() * 1e9))
    total = len(bodies) * BATCH
    print(f"\n== ingest: {len(bodies)} OTLP protobuf exports x {BATCH} spans = {total} spans, one thread")

    def decode_only() -> None:
        for body in bodies:
            ExportTraceServiceRequest().ParseFromString(body)

    rows = [span_row(r) for body in bodies for r in decode_traces(body, PB).spans]

    def raw_executemany() -> None:
        conn = sqlite3.connect(tmp / "raw.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.executescript(SCHEMA)
        for i in range(0, len(rows), BATCH):
            conn.execute("BEGIN")
            conn.executemany(INSERT, rows[i : i + BATCH])
            conn.execute("COMMIT")
        conn.close()

    store = SpanStore(tmp / "ingest.db")

    def collector_ingest() -> None:
        for body in bodies:
            store.insert_sync(decode_traces(body, PB).spans)

    results = {
        "protobuf decode only": timed(decode_only),
        "raw executemany (same rows, same indexes)": timed(raw_executemany),
        "collector ingest (decode + store)": timed(collector_ingest),
    }
    assert store.span_count == total, store.span_count
    store.close()

    async def via_async_api() -> None:
        collector = TraceCollector(SpanStore(tmp / "async.db"))
        queue = list(reversed(bodies))

        async def sender() -> None:  # one OTLP exporter sending its batches back to back
            while queue:
                await collector.ingest(queue.pop(), PB)

        await asyncio.gather(*(sender() for _ in range(SENDERS)))
        assert collector.store.span_count == total
        commits.append(collector.store._group.commits)
        await collector.close()

    commits: list[int] = []
    async_name = f"TraceCollector.ingest, {SENDERS} concurrent senders"
    results[async_name] = timed(lambda: asyncio.run(via_async_api()))
    print(f"{'path':46} {'spans/s':>10} {'cpu us/span':>12} {'spans/cpu-s':>12}")
    for name, (wall, cpu) in results.items():
        print(f"{name:46} {total / wall:10,.0f} {cpu / total * 1e6:12.1f} {total / cpu:12,.0f}")
    print(f"({len(bodies)} exports written in {commits[0]} group commits)")
    decode = results["protobuf decode only"]
    raw = results["raw executemany (same rows, same indexes)"]
    for name in ("collector ingest (decode + store)", async_name):
        wall, cpu = results[name]
        print(
            f"{name}: x{decode[0] / wall:.3f} the speed of decode alone, x{raw[0] / wall:.2f} raw executemany"
        )
    wall, cpu = results[async_name]
    verdict = "MET" if total / wall >= 10_000 else "MISSED"
    print(
        f"target >= 10,000 spans/s: {verdict} ({total / wall:,.0f}/s wall; {total / cpu:,.0f} per CPU-second)"
    )


def client_spans(calls: int) -> list[Any]:
    """The spans `calls` traced client calls make (a call and an attempt span each), kept."""
    from meshkit import Request, Response
    from meshkit.client import MeshClient
    from meshkit.observe.tracing import Tracer
    from meshkit.transport.mock import MockTransport

    kept: list[Any] = []

    class Keep:  # a span processor that only keeps what ends
        def on_start(self, span: object, parent_context: object = None) -> None:
            pass

        def on_end(self, span: Any) -> None:
            kept.append(span)

        def shutdown(self) -> None:
            pass

        def force_flush(self, timeout_millis: int = 30_000) -> bool:
            return True

    tracer = Tracer("meshkit-plane", processors=[Keep()])  # type: ignore[list-item]
    client = MeshClient.static(
        {"bench": [("127.0.0.1", 9)]}, tracer=tracer, transport=MockTransport(lambda r: Response(200))
    )

    async def run() -> None:
        for _ in range(calls):
            await client.call(Request("GET", "/orders/42", service="bench"))
        await client.aclose()

    asyncio.run(run())
    return kept


def bench_export(calls: int) -> None:
    from meshkit.plane.collector.exporter import _readable_record, span_record

    spans = client_spans(calls)
    print(f"\n== in-process export: {len(spans)} meshkit client spans ({calls} calls) into stored records")
    results = {}
    for name, convert in (("via ReadableSpan properties (baseline)", _readable_record),
                          ("CollectorSpanExporter's span_record", span_record)):  # fmt: skip
        for _ in range(2):  # warm-up
            [convert(s) for s in spans]
        rounds = [timed(lambda c=convert: [c(s) for s in spans]) for _ in range(5)]  # type: ignore[misc]
        results[name] = min(cpu for _, cpu in rounds) / len(spans) * 1e6
        print(f"{name:46} {results[name]:6.2f} cpu us/span (best of 5)")
    base, fast = results.values()
    print(f"span_record: x{base / fast:.2f} the baseline's speed")


def fill(path: Path, n_spans: int, rng: random.Random, now: float) -> None:
    """Bulk-load n spans (10-span traces over the last 24 h, oldest first) into a store file.

    Rows go into the bare table and the store's indexes are built afterwards (one sort per
    index, as any bulk load does), then `SpanStore` opens the file as the plane would."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    table, *indexes = (stmt for stmt in SCHEMA.split(";") if stmt.strip())
    conn.execute(table)
    day_ns = 86_400 * 10**9
    first_ns = int(now * 1e9) - day_ns
    n_traces = n_spans // 10
    conn.execute("BEGIN")
    for t0 in range(0, n_traces, 10_000):
        chunk = []
        for t in range(t0, min(t0 + 10_000, n_traces)):
            trace_id = f"{rng.getrandbits(128):032x}"
            start = first_ns + t * (day_ns // n_traces)
            for s in range(10):
                duration = int(rng.lognormvariate(16, 1.2))  # median ~9 ms, long tail
                record = make_record(
                    trace_id,
                    f"{t * 10 + s + 1:016x}",
                    f"{t * 10 + s:016x}" if s else None,
                    SERVICES[(t + s) % 20],
                    OPERATIONS[(t * 7 + s) % 50],
                    2 + s % 2,
                    start + s * 1000,
                    start + s * 1000 + duration,
                    rng.random() < 0.01,
                    {"http.status_code": 200, "user.id": f"u{rng.randrange(1000)}"},
                    [],
                )
                chunk.append(span_row(record))
        conn.executemany(INSERT, chunk)
    conn.execute("COMMIT")
    for index in indexes:
        conn.execute(index)
    conn.close()


def queries(rng: random.Random, now: float, n: int) -> list[dict[str, Any]]:
    return [SHAPES[i % len(SHAPES)][1](rng, now) for i in range(n)]


Shape = Callable[[random.Random, float], dict[str, Any]]
SHAPES: list[tuple[str, Shape]] = [
    ("service", lambda r, now: {"service_name": r.choice(SERVICES)}),
    (
        "service+operation",
        lambda r, now: {"service_name": r.choice(SERVICES), "operation_name": r.choice(OPERATIONS)},
    ),
    ("service+min_duration", lambda r, now: {"service_name": r.choice(SERVICES), "min_duration": 50.0}),
    (
        "service+max_duration,100",
        lambda r, now: {"service_name": r.choice(SERVICES), "max_duration": 1.0, "limit": 100},
    ),
    ("error_only", lambda r, now: {"error_only": True}),
    ("service+error_only", lambda r, now: {"service_name": r.choice(SERVICES), "error_only": True}),
    ("min_duration (rare)", lambda r, now: {"min_duration": 1000.0}),
    ("duration band", lambda r, now: {"min_duration": 5.0, "max_duration": 6.0}),
    ("time range", lambda r, now: {"start": now - 7200 - (h := r.uniform(0, 80000)), "end": now - h}),
    (
        "service+attribute",
        lambda r, now: {"service_name": r.choice(SERVICES), "attribute": ("user.id", "u7")},
    ),
    ("operation,limit 1000", lambda r, now: {"operation_name": r.choice(OPERATIONS), "limit": 1000}),
]
NAIVE = "SELECT trace_id, MAX(start_ns) AS t FROM spans NOT INDEXED {where} GROUP BY trace_id ORDER BY t DESC LIMIT ?"


def bench_search(n_spans: int, n_queries: int, tmp: Path) -> None:
    rng = random.Random(11)
    now = SYSTEM_CLOCK.time()
    wall, _ = timed(lambda: fill(tmp / "search.db", n_spans, rng, now))
    store = SpanStore(tmp / "search.db", max_spans=n_spans)
    print(f"\n== search over {store.span_count:,} stored spans (bulk load took {wall:.1f} s)")
    collector = TraceCollector(store)
    mix = queries(rng, now, n_queries)
    trace_ids: list[str] = []

    async def run() -> tuple[list[float], list[float], float]:
        latencies = []
        for q in mix:
            t0 = time.perf_counter()
            found = await collector.search_traces(**q)
            latencies.append(time.perf_counter() - t0)
            trace_ids.extend(f["trace_id"] for f in found[:1])
        trace_latencies = []
        for trace_id in trace_ids[:200]:
            t0 = time.perf_counter()
            assert await collector.get_trace(trace_id) is not None
            trace_latencies.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        edges = await collector.get_service_dependencies(window=3600)
        assert edges
        return latencies, trace_latencies, time.perf_counter() - t0

    latencies, trace_latencies, deps = asyncio.run(run())
    ms = [v * 1000 for v in latencies]
    for i, (shape, _) in enumerate(SHAPES):
        mine = ms[i :: len(SHAPES)]
        print(f"  {shape:26} p50 {pct(mine, 50):6.1f} ms  max {max(mine):6.1f} ms")
    print(
        f"search_traces x{len(ms)}: p50 {pct(ms, 50):.1f} ms  p99 {pct(ms, 99):.1f} ms  max {max(ms):.1f} ms"
    )
    tms = [v * 1000 for v in trace_latencies]
    print(f"get_trace x{len(tms)}:     p50 {pct(tms, 50):.2f} ms  p99 {pct(tms, 99):.2f} ms")
    print(f"get_service_dependencies (last hour, ~{n_spans // 48:,} client spans): {deps * 1000:.0f} ms")

    naive_ms = []
    for q in mix[:22]:  # two of each shape: the naive plan scans the table every time
        query = TraceQuery(**q)
        conds, params = query.conditions()
        where = f"WHERE {' AND '.join(conds)}" if conds else ""
        t0 = time.perf_counter()
        store._read.execute(NAIVE.format(where=where), [*params, query.limit]).fetchall()
        naive_ms.append((time.perf_counter() - t0) * 1000)
    ours = sorted(ms[:22])
    print(
        f"naive GROUP BY plan, same first 22 queries: p50 {pct(naive_ms, 50):.0f} ms  max {max(naive_ms):.0f} ms"
    )
    print(f"naive p50 / collector p50 (same queries):   {pct(naive_ms, 50) / pct(ours, 50):.1f}x")
    print(f"target p99 <= 100 ms: {'MET' if pct(ms, 99) <= 100 else 'MISSED'} ({pct(ms, 99):.1f} ms)")
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--ingest-spans", type=int, default=102_400)
    parser.add_argument("--spans", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=330)
    parser.add_argument("--export-calls", type=int, default=2048, help="calls whose spans are converted")
    args = parser.parse_args()
    if args.export_calls:
        bench_export(args.export_calls)
    with tempfile.TemporaryDirectory(prefix="meshkit-bench-collector-") as tmp:
        if args.ingest_spans:
            bench_ingest(args.ingest_spans, Path(tmp))
        if args.spans:
            bench_search(args.spans, args.queries, Path(tmp))


if __name__ == "__main__":
    main()
