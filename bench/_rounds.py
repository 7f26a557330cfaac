"""Interleaved rounds of contenders, the way every meshkit benchmark measures.

A `Contender` is one way of doing the same operation (`call()` returns True on
success) with its setup and teardown. `measure_level()` starts and warms up each
contender, then runs `rounds` timed rounds of `seconds` each, alternating the
contenders and rotating their order every round, so that noise from other processes
on a shared machine falls on all of them alike. `summarize()` keeps each contender's
median figures and its ratios to a baseline measured in the same run. A contender
that cannot be built or started is reported with its error, never left out quietly.
"""

from __future__ import annotations

import asyncio
import gc
import math
import statistics
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any

from _stats import RoundResult, Summary, ratio


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


def unavailable(name: str, exc: BaseException) -> Contender:
    async def fail() -> None:
        raise RuntimeError(f"{type(exc).__name__}: {exc}")

    async def never() -> bool:
        return False

    async def nothing() -> None:
        return None

    contender = Contender(name, "unavailable", fail, never, nothing, available=False)
    contender.error = f"{type(exc).__name__}: {exc}"
    return contender


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


def summarize(
    contenders: Sequence[Contender], concurrency: int, baseline: str | None = None
) -> dict[str, dict[str, Any]]:
    """Per contender: its medians, "ratio" (req/s over the baseline's) and "cpu_ratio", and the
    same two taken round by round ("paired_ratio", "paired_cpu_ratio": the median over rounds of
    this round's figure over the baseline's in the same round, so a drift of the machine from
    one round to the next falls on both sides of each ratio)."""
    summaries = {c.name: Summary.of(c.rounds[concurrency]) for c in contenders if c.rounds.get(concurrency)}
    base_name = baseline if baseline is not None else (contenders[0].name if contenders else "")
    base = summaries.get(base_name)
    base_rounds = next((c.rounds.get(concurrency, []) for c in contenders if c.name == base_name), [])
    out: dict[str, dict[str, Any]] = {}
    for c in contenders:
        s = summaries.get(c.name)
        row: dict[str, Any] = {"note": c.note, "error": c.error}
        if s is not None:
            row |= s.as_dict()
            row["ratio"] = ratio(s.rps, base.rps) if base else None
            # the baseline's CPU per request over this one's: the req/s ratio a CPU-bound client would get
            row["cpu_ratio"] = ratio(base.cpu_us_per_request, s.cpu_us_per_request) if base else None
            pairs = list(zip(c.rounds[concurrency], base_rounds, strict=False)) if base else []
            row["paired_ratio"] = _median([ratio(mine.rps, theirs.rps) for mine, theirs in pairs])
            row["paired_cpu_ratio"] = _median(
                [ratio(theirs.cpu_us_per_request, mine.cpu_us_per_request) for mine, theirs in pairs]
            )
        out[c.name] = row
    return out


def _median(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(known) if known else None


def event_loop_factory(choice: str) -> tuple[Callable[[], asyncio.AbstractEventLoop] | None, str]:
    """uvloop when installed (or demanded), else asyncio's loop; and the loop's name to print."""
    if choice != "asyncio":
        try:
            import uvloop

            return uvloop.new_event_loop, f"uvloop {version('uvloop')}"
        except ImportError:
            if choice == "uvloop":
                raise
    return None, "asyncio (default loop)"
