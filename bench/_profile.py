"""cProfile helpers for benchmarks: where a client's time per request goes, by module.

`profile(run)` profiles one bounded run (a coroutine that returns how many requests it
made). `by_module(profile, requests)` sums each function's own time (cProfile's
tottime) per source module, in microseconds per request: meshkit modules one by one,
third-party packages by name, the standard library by module, C calls together.
Profiling a baseline and a subject over the same calls and printing `compare()` shows
where the subject spends time the baseline does not. cProfile's hooks slow Python
code down (a factor of two or so), so read the figures as proportions.
"""

from __future__ import annotations

import cProfile
import io
import pstats
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any


async def profile(run: Callable[[], Awaitable[int]]) -> tuple[pstats.Stats, int]:
    """Run `run()` under cProfile; return the stats and the number of requests it made."""
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        requests = await run()
    finally:
        profiler.disable()
    return pstats.Stats(profiler), requests


def module_of(filename: str, function: str) -> str:
    if filename == "~":
        return "C calls (builtins, uvloop, multidict, yarl...)"
    if "/src/meshkit/" in filename:
        return "meshkit/" + filename.split("/src/meshkit/", 1)[1]
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1].split("/", 1)[0]
    if "/bench/" in filename:
        return "bench/" + filename.rsplit("/", 1)[1]
    if "/lib/python3" in filename:
        tail = filename.split("/lib/python3", 1)[1].split("/", 1)[1]
        return "stdlib/" + tail.split("/", 1)[0] if "/" in tail else "stdlib/" + tail
    return filename


def by_module(stats: pstats.Stats, requests: int) -> dict[str, float]:
    """Own time (tottime) per module, in microseconds per request."""
    totals: dict[str, float] = defaultdict(float)
    raw: dict[tuple[str, int, str], tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]
    for (filename, _line, function), (_cc, _nc, tottime, _ct, _callers) in raw.items():
        totals[module_of(filename, function)] += tottime
    return {module: seconds / max(1, requests) * 1e6 for module, seconds in totals.items()}


def compare(baseline: dict[str, float], subject: dict[str, float], limit: int = 25) -> list[list[object]]:
    """Rows of module, baseline us/req, subject us/req, difference; largest difference first."""
    diffs = {m: subject.get(m, 0.0) - baseline.get(m, 0.0) for m in set(baseline) | set(subject)}
    order = sorted(diffs, key=lambda m: -abs(diffs[m]))[:limit]
    rows: list[list[object]] = [[m, baseline.get(m, 0.0), subject.get(m, 0.0), diffs[m]] for m in order]
    base_total, subject_total = sum(baseline.values()), sum(subject.values())
    rows.append(["total", base_total, subject_total, subject_total - base_total])
    return rows


def top_functions(stats: pstats.Stats, key: str = "tottime", top: int = 25) -> str:
    """pstats' listing of the `top` functions by `key`, with its column header."""
    out = io.StringIO()
    stats.stream = out  # type: ignore[attr-defined]
    stats.sort_stats(key).print_stats(top)
    text = out.getvalue()
    start = text.find("   ncalls")
    return text[start:].rstrip() if start >= 0 else text.rstrip()
