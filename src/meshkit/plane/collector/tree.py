"""One trace as a tree of spans, and the summary both search and the trace view show.

Spans nest under their parent; a span whose parent was never received (or aged out) is an
orphan and sits at the root level, flagged, so a partial trace still shows everything.
Time per service is self time, as Jaeger's trace statistics count it: a span's duration
less the part of it covered by its children, summed per service. Self times do not double
count nested calls, so the numbers say where the trace's time was spent.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from typing import Any

import orjson

from meshkit.plane.collector.record import KIND_NAMES
from meshkit.plane.collector.store import SpanStore

# Row layout shared with search: trace_id, span_id, parent_span_id, service, name, start_ns, end_ns, error
_ID, _PARENT, _SERVICE, _NAME, _START, _END, _ERROR = range(1, 8)
_TRACE_COLUMNS = (
    "trace_id, span_id, parent_span_id, service, name, start_ns, end_ns, error,"
    " kind, duration_ms, peer_service, attributes, events, status_message"
)


def check_trace_id(trace_id: str) -> str:
    """A trace id as 32 lowercase hex chars, or ValueError."""
    lowered = trace_id.lower() if isinstance(trace_id, str) else ""
    if len(lowered) != 32 or lowered.strip("0123456789abcdef"):
        raise ValueError(f"trace_id: must be 32 hex characters, got {trace_id!r}")
    return lowered


def _root(rows: list[tuple[Any, ...]], ids: set[str]) -> tuple[Any, ...]:
    """The earliest span with no parent; failing that, the earliest whose parent is missing."""
    true_roots = [r for r in rows if r[_PARENT] is None]
    candidates = true_roots or [r for r in rows if r[_PARENT] not in ids] or rows
    return min(candidates, key=lambda r: r[_START])


def summarize(trace_id: str, rows: list[tuple[Any, ...]]) -> dict[str, Any]:
    ids = {r[_ID] for r in rows}
    root = _root(rows, ids)
    start = min(r[_START] for r in rows)
    end = max(r[_END] for r in rows)
    return {
        "trace_id": trace_id,
        "root_operation": root[_NAME],
        "root_service": root[_SERVICE],
        "start": start / 1e9,
        "duration_ms": (end - start) / 1e6,
        "span_count": len(rows),
        "error_count": sum(1 for r in rows if r[_ERROR]),
        "services": sorted({r[_SERVICE] for r in rows}),
    }


def _covered_ns(start: int, end: int, children: list[tuple[Any, ...]]) -> int:
    """Length of the union of the children's intervals, clipped to [start, end]."""
    covered, reach = 0, start
    for child in sorted(children, key=lambda c: c[_START]):
        lo, hi = max(child[_START], reach), min(child[_END], end)
        if hi > lo:
            covered += hi - lo
            reach = hi
    return covered


def build_tree(trace_id: str, rows: list[tuple[Any, ...]]) -> dict[str, Any]:
    rows = sorted(rows, key=lambda r: (r[_START], r[_ID]))
    by_id = {r[_ID]: r for r in rows}
    children: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    roots: list[tuple[Any, ...]] = []
    for r in rows:
        (children[r[_PARENT]] if r[_PARENT] in by_id else roots).append(r)
    placed = _reachable(roots, children)
    for r in rows:  # a parent cycle leaves spans unreachable: lift them to the root level
        if r[_ID] not in placed:
            children[r[_PARENT]].remove(r)
            roots.append(r)
            placed |= _reachable([r], children)
    service_time: dict[str, float] = defaultdict(float)
    nodes: dict[str, dict[str, Any]] = {}
    for r in rows:
        self_ns = (r[_END] - r[_START]) - _covered_ns(r[_START], r[_END], children.get(r[_ID], []))
        service_time[r[_SERVICE]] += self_ns / 1e6
        nodes[r[_ID]] = _node(r, self_ns, orphan=r[_PARENT] is not None and r[_PARENT] not in by_id)
    for parent_id, kids in children.items():
        if parent_id in nodes:
            nodes[parent_id]["children"] = [nodes[k[_ID]] for k in kids]
    summary = summarize(trace_id, rows)
    summary["time_per_service_ms"] = dict(sorted(service_time.items()))
    return {"trace_id": trace_id, "summary": summary, "spans": [nodes[r[_ID]] for r in roots]}


def _reachable(roots: list[tuple[Any, ...]], children: dict[str, list[tuple[Any, ...]]]) -> set[str]:
    seen: set[str] = set()
    stack = [r[_ID] for r in roots]
    while stack:
        span_id = stack.pop()
        if span_id not in seen:
            seen.add(span_id)
            stack.extend(c[_ID] for c in children.get(span_id, ()))
    return seen


def _node(r: tuple[Any, ...], self_ns: int, *, orphan: bool) -> dict[str, Any]:
    kind, duration_ms, peer, attributes, events, status_message = r[8:14]
    return {
        "span_id": r[_ID],
        "parent_span_id": r[_PARENT],
        "service": r[_SERVICE],
        "operation": r[_NAME],
        "kind": KIND_NAMES[kind] if 0 <= kind < len(KIND_NAMES) else str(kind),
        "start": r[_START] / 1e9,
        "start_ns": r[_START],
        "end_ns": r[_END],
        "duration_ms": duration_ms,
        "self_ms": self_ns / 1e6,
        "error": bool(r[_ERROR]),
        "status_message": status_message or "",
        "peer_service": peer,
        "orphan": orphan,
        "attributes": orjson.loads(attributes) if attributes else {},
        "events": orjson.loads(events) if events else [],
        "children": [],
    }


async def get_trace(store: SpanStore, trace_id: str) -> dict[str, Any] | None:
    """The whole trace as a tree with its summary, or None when no span of it is stored."""
    trace_id = check_trace_id(trace_id)

    def run(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
        return conn.execute(f"SELECT {_TRACE_COLUMNS} FROM spans WHERE trace_id = ?", (trace_id,)).fetchall()

    rows = await store.read(run)
    return build_tree(trace_id, rows) if rows else None
