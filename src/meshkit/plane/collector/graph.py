"""The service dependency graph, read from client spans: who calls whom, how often, how well.

Each CLIENT (or PRODUCER) span is one call. Its caller is the span's own service; its callee
is the service of the SERVER (or CONSUMER) span that is its child when the callee is traced
too, else the peer the client span names (`meshkit.service`, `peer.service`,
`server.address`). This is how Jaeger's dependency job and Zipkin's `DependencyLinker`
build links. A client span whose parent is a client span of the same service is a part of
that call (meshkit's attempt spans under its call span) and is not counted again: one call
is counted once, with the outcome the caller got. Latency percentiles are nearest-rank over
the client spans' durations, i.e. the latency the caller saw, network included.
"""

from __future__ import annotations

import math
import sqlite3
from collections import defaultdict
from typing import Any

from meshkit.plane.collector.record import is_number
from meshkit.plane.collector.store import SpanStore

_EDGES = """
SELECT c.service,
       COALESCE((SELECT s.service FROM spans AS s
                 WHERE s.trace_id = c.trace_id AND s.parent_span_id = c.span_id AND s.kind IN (2, 5)
                 LIMIT 1), c.peer_service),
       c.duration_ms, c.error
FROM spans AS c INDEXED BY spans_caller_start
WHERE c.kind IN (3, 4) AND c.start_ns >= ?
  AND NOT EXISTS (SELECT 1 FROM spans AS p
                  WHERE p.trace_id = c.trace_id AND p.span_id = c.parent_span_id
                    AND p.kind IN (3, 4) AND p.service = c.service)
"""


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (q in (0, 1])."""
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


def edges_from_calls(calls: list[tuple[str, str | None, float, int]]) -> list[dict[str, Any]]:
    """Fold (caller, callee, duration_ms, error) rows into one edge per caller -> callee."""
    durations: dict[tuple[str, str], list[float]] = defaultdict(list)
    errors: dict[tuple[str, str], int] = defaultdict(int)
    for caller, callee, duration_ms, error in calls:
        if callee is None:
            continue
        durations[caller, callee].append(duration_ms)
        errors[caller, callee] += bool(error)
    edges = []
    for (caller, callee), values in sorted(durations.items()):
        values.sort()
        failed = errors[caller, callee]
        edges.append(
            {
                "caller": caller,
                "callee": callee,
                "calls": len(values),
                "errors": failed,
                "error_rate": failed / len(values),
                "p50_ms": percentile(values, 0.50),
                "p99_ms": percentile(values, 0.99),
            }
        )
    return edges


async def get_service_dependencies(store: SpanStore, window: float | None = None) -> list[dict[str, Any]]:
    """Edges {caller, callee, calls, errors, error_rate, p50_ms, p99_ms} over the last `window` seconds
    (None: every stored span)."""
    if window is not None and not (is_number(window) and window > 0):
        raise ValueError(f"window: must be a number of seconds > 0 or None, got {window!r}")
    since = 0 if window is None else int((store.clock.time() - window) * 1e9)

    def run(conn: sqlite3.Connection) -> list[tuple[str, str | None, float, int]]:
        return conn.execute(_EDGES, (since,)).fetchall()

    return edges_from_calls(await store.read(run))
