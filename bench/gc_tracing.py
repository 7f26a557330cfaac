"""What the garbage collector does while the meshkit client runs with tracing off and at 100%.

Tracing off allocates almost nothing that outlives a request, so hardly any collection runs.
At 100% sampling, finished spans wait in the export queue until a batch is full; they are
GC-tracked objects, so gen-0 collections start to run, walk the in-flight requests' objects
and promote them, which brings full collections of the whole heap. This prints, for each
mode, the collections per generation and the time spent in them (`gc.callbacks`), the
requests made and the process's CPU time per request (export thread included), over one
local nginx (1 KB body) on uvloop. Figures are of one process per mode, run one after the
other; on a shared machine CPU per request moves by +-20% between runs, the collection
counts much less.

    .venv/bin/python bench/gc_tracing.py                          # off, 100% at batch 512 and 128
    .venv/bin/python bench/gc_tracing.py --concurrency 1 --seconds 4
    .venv/bin/python bench/gc_tracing.py --no-gc                  # the collector off while measuring
    .venv/bin/python bench/gc_tracing.py --no-gc --inline-export  # and each batch exported on the loop's thread
    .venv/bin/python bench/gc_tracing.py --drop-export            # full batches dropped unread: instrumentation alone

`--no-gc` disables the collector for the measured seconds (in every mode): what tracing costs
besides the collector. `--inline-export` exports each full batch on the thread that ended its
last span (the event loop's) instead of the processor's worker thread: what the hand-off to
that thread costs. `--drop-export` drops each full batch unread on the loop's thread: what
the request path's instrumentation costs without any exporter. Besides the process's CPU
per request, each row shows the loop thread's own (`loop`) and the exporter's on its thread
(`export`, the time inside `export()`). `--worker` is the process each run is (not meant to be called by hand).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult

from _tracing_contenders import CountingMemoryExporter

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

MODES = ("off", "100%:512", "100%:128")  # tracing off; 100% sampling with that export batch size


class _TimedExporter(CountingMemoryExporter):
    """The benchmark's reading exporter, also summing the CPU time its exports take on their thread."""

    def __init__(self) -> None:
        super().__init__()
        self.cpu = 0.0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        started = time.thread_time()
        try:
            return super().export(spans)
        finally:
            self.cpu += time.thread_time() - started


async def _run(mode: str, concurrency: int, seconds: float, port: int, options: str) -> dict[str, object]:
    from meshkit import Request
    from meshkit.client import MeshClient
    from meshkit.observe.batch import BatchingSpanProcessor
    from meshkit.observe.tracing import Tracer

    tracer = None
    exporter = _TimedExporter()
    if mode != "off":
        batch = int(mode.split(":")[1])
        kind: type = BatchingSpanProcessor
        if "inline-export" in options:
            kind = _inline_export_class()
        elif "drop-export" in options:
            kind = _drop_export_class()
        processor = kind(exporter, max_export_batch_size=batch)
        tracer = Tracer("bench", processors=[processor])
    client = MeshClient.static({"bench": [("127.0.0.1", port)]}, tracer=tracer)
    done = [0]

    async def worker(until: float) -> None:
        while time.monotonic() < until:
            resp = await client.call(Request("GET", "/", service="bench"))
            if resp.status != 200:
                raise RuntimeError(f"status {resp.status}")
            done[0] += 1

    await worker(time.monotonic() + 1.0)  # warm-up, outside the figures
    counts, spent, started = [0, 0, 0], [0.0, 0.0, 0.0], [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            counts[info["generation"]] += 1
            spent[info["generation"]] += time.perf_counter() - started[0]

    gc.callbacks.append(on_gc)
    if "no-gc" in options:
        gc.disable()
    done[0], cpu, loop_cpu, exporter.cpu = 0, time.process_time(), time.thread_time(), 0.0
    until = time.monotonic() + seconds
    await asyncio.gather(*(worker(until) for _ in range(concurrency)))
    cpu, loop_cpu = time.process_time() - cpu, time.thread_time() - loop_cpu
    export_cpu = exporter.cpu
    gc.enable()
    gc.callbacks.remove(on_gc)
    await client.aclose()
    if tracer is not None:
        tracer.shutdown()
    return {
        "mode": mode,
        "requests": done[0],
        "cpu_us_per_request": cpu / done[0] * 1e6,
        "loop_us_per_request": loop_cpu / done[0] * 1e6,
        "export_us_per_request": export_cpu / done[0] * 1e6,
        "collections": counts,
        "gc_ms": [round(s * 1000, 1) for s in spent],
        "gc_us_per_request": sum(spent) / done[0] * 1e6,
    }


def _drop_export_class() -> type:
    from meshkit.observe.batch import BatchingSpanProcessor

    class DropExport(BatchingSpanProcessor):
        """Drops each full batch unread on the thread that filled it: no exporter runs at all."""

        def overflow(self) -> None:
            self.queue.clear()

    return DropExport


def _inline_export_class() -> type:
    from meshkit.observe.batch import BatchingSpanProcessor

    class InlineExport(BatchingSpanProcessor):
        """Exports a full batch on the thread that filled it; the worker only sees the timer."""

        def overflow(self) -> None:
            with self._export_lock:  # exports never overlap, as the worker's
                queue = self.queue
                self._export([queue.popleft() for _ in range(min(len(queue), self._batch_size))])

    return InlineExport


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--worker", nargs=5, metavar=("MODE", "C", "S", "PORT", "OPTS"), help=argparse.SUPPRESS
    )
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight (default 32)")
    parser.add_argument("--seconds", type=float, default=4.0, help="measured seconds per mode (default 4)")
    parser.add_argument("--rounds", type=int, default=2, help="runs of every mode, alternated (default 2)")
    parser.add_argument("--no-gc", action="store_true", help="disable the collector while measuring")
    export = parser.add_mutually_exclusive_group()
    export.add_argument(
        "--inline-export", action="store_true", help="export full batches on the loop's thread"
    )
    export.add_argument("--drop-export", action="store_true", help="drop full batches unread (no exporter)")
    args = parser.parse_args()
    if args.worker:
        import uvloop

        mode, concurrency, seconds, port, options = args.worker
        print(json.dumps(uvloop.run(_run(mode, int(concurrency), float(seconds), int(port), options))))
        return
    for name, value in (
        ("concurrency", args.concurrency),
        ("seconds", args.seconds),
        ("rounds", args.rounds),
    ):
        if value <= 0:
            raise SystemExit(f"{name}: must be > 0, got {value}")
    from _nginx import LocalNginx

    options = ",".join(
        name for name in ("no-gc", "inline-export", "drop-export") if getattr(args, name.replace("-", "_"))
    )
    extra = f", {options}" if options else ""
    print(f"meshkit client, c={args.concurrency}, {args.seconds:g} s per run, local nginx (1 KB){extra}")
    print(
        f"{'mode':<10} {'req':>7} {'cpu us/req':>10} {'loop':>6} {'export':>6} {'gen0':>5} {'gen1':>5} {'full':>5} {'gc ms':>7} {'gc us/req':>9}"
    )
    cpu: dict[str, list[float]] = {mode: [] for mode in MODES}
    with LocalNginx(body_bytes=1024) as nginx:
        for _ in range(args.rounds):
            for mode in MODES:
                cmd = [sys.executable, __file__, "--worker", mode, str(args.concurrency), str(args.seconds)]
                cmd += [str(nginx.ports[0]), options or "-"]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True)
                row = json.loads(out.stdout.strip().splitlines()[-1])
                gen0, gen1, full = row["collections"]
                cpu[mode].append(row["cpu_us_per_request"])
                print(
                    f"{row['mode']:<10} {row['requests']:>7} {row['cpu_us_per_request']:>10.1f} "
                    f"{row['loop_us_per_request']:>6.1f} {row['export_us_per_request']:>6.1f} {gen0:>5} "
                    f"{gen1:>5} {full:>5} {sum(row['gc_ms']):>7.1f} {row['gc_us_per_request']:>9.2f}"
                )

    off = statistics.median(cpu["off"])
    medians = ", ".join(f"{mode} {statistics.median(v):.1f}" for mode, v in cpu.items())
    ratios = ", ".join(f"{mode} {off / statistics.median(v):.2f}" for mode, v in cpu.items() if mode != "off")
    print(f"median cpu us/req: {medians}; off/on: {ratios}")


if __name__ == "__main__":
    main()
