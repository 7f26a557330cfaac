"""Small statistics and table printing shared by the benchmarks.

Machines here are shared and noisy, so a benchmark runs its contenders in
interleaved rounds and keeps the median of each figure over the rounds
(`RoundResult` per round, `Summary.of(rounds)` per contender); ratios are taken
against a baseline measured in the same run. Percentiles use the nearest-rank
method on the sorted latencies. The process's CPU time per request is kept too: when
other processes steal the CPU, req/s drops but CPU per request barely moves, so it
is the steadier measure of a client's own cost.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values; q in [0, 100]."""
    if not 0 <= q <= 100:
        raise ValueError(f"q: must be in [0, 100], got {q!r}")
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass(slots=True)
class RoundResult:
    """One timed round of one contender."""

    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    cpu_seconds: float = math.nan  # this process's CPU time during the round

    @property
    def cpu_us_per_request(self) -> float:
        return self.cpu_seconds / self.requests * 1e6 if self.requests else math.nan

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @classmethod
    def of(
        cls, latencies: list[float], errors: int, seconds: float, cpu_seconds: float = math.nan
    ) -> RoundResult:
        latencies.sort()
        return cls(
            requests=len(latencies),
            errors=errors,
            seconds=seconds,
            p50_ms=percentile(latencies, 50) * 1000,
            p99_ms=percentile(latencies, 99) * 1000,
            cpu_seconds=cpu_seconds,
        )


@dataclass(slots=True)
class Summary:
    """The median of each figure over a contender's rounds."""

    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us_per_request: float
    requests: int
    errors: int
    rounds: list[float]  # req/s of each round, to show the spread

    @classmethod
    def of(cls, rounds: Sequence[RoundResult]) -> Summary:
        if not rounds:
            raise ValueError("rounds: need at least one round")
        return cls(
            rps=statistics.median(r.rps for r in rounds),
            p50_ms=statistics.median(r.p50_ms for r in rounds),
            p99_ms=statistics.median(r.p99_ms for r in rounds),
            cpu_us_per_request=statistics.median(r.cpu_us_per_request for r in rounds),
            requests=sum(r.requests for r in rounds),
            errors=sum(r.errors for r in rounds),
            rounds=[round(r.rps, 1) for r in rounds],
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def ratio(value: float, baseline: float) -> float:
    return value / baseline if baseline > 0 else math.nan


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain text table: the first column left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers], *[[_cell(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        first = row[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True))
        return "  ".join([first, *rest])

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(row) for row in cells[1:])])


def _cell(value: object) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.2f}"
    return str(value)
