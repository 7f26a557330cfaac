"""Trace search: recent traces having a span that matches every filter, newest first.

As in Jaeger's search, the filters (service, operation, duration, error, attribute, time)
apply to one span, and a trace is returned when any of its spans matches. The query walks
an index in start-time order (newest first) and stops as soon as `limit` distinct traces
are found, so a search costs in proportion to what it returns rather than to the store's
size. An attribute filter first tests the stored JSON text for the value (`instr`), and
parses only the rows that contain it. When only a duration bounds the search, a bounded probe of the duration index decides
whether that index (few matches: sort them) or the time index (many: stream) is cheaper.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from meshkit.plane.collector.record import is_number
from meshkit.plane.collector.store import SpanStore
from meshkit.plane.collector.tree import summarize

MAX_LIMIT = 1000
_PROBE_ROWS = 5000
_FETCH = 512
_JSON_ESCAPED = frozenset('"\\' + "".join(map(chr, range(32))))


class TraceQuery:
    """Validated search parameters, compiled to one SQL statement."""

    def __init__(
        self,
        service_name: str | None = None,
        operation_name: str | None = None,
        min_duration: float | None = None,
        max_duration: float | None = None,
        error_only: bool = False,
        limit: int = 20,
        attribute: tuple[str, str] | None = None,
        start: float | None = None,
        end: float | None = None,
    ) -> None:
        _check_duration("min_duration", min_duration)
        _check_duration("max_duration", max_duration)
        if min_duration is not None and max_duration is not None and min_duration > max_duration:
            raise ValueError(f"min_duration: must be <= max_duration ({max_duration}), got {min_duration}")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit: must be an integer from 1 to {MAX_LIMIT}, got {limit!r}")
        if attribute is not None and (len(attribute) != 2 or not attribute[0] or '"' in attribute[0]):
            raise ValueError(f"attribute: must be (key, value) with a key free of '\"', got {attribute!r}")
        for field, value in (("start", start), ("end", end)):
            if value is not None and not (is_number(value) and value >= 0):
                raise ValueError(f"{field}: must be unix seconds >= 0, got {value!r}")
        if start is not None and end is not None and start > end:
            raise ValueError(f"start: must be <= end ({end}), got {start}")
        self.service_name = service_name or None
        self.operation_name = operation_name or None
        self.min_duration, self.max_duration = min_duration, max_duration
        self.error_only, self.limit, self.attribute = bool(error_only), limit, attribute
        self.start, self.end = start, end

    def conditions(self) -> tuple[list[str], list[Any]]:
        conds: list[str] = []
        params: list[Any] = []
        for sql, value in (
            ("service = ?", self.service_name),
            ("name = ?", self.operation_name),
            ("duration_ms >= ?", self.min_duration),
            ("duration_ms <= ?", self.max_duration),
            ("start_ns >= ?", None if self.start is None else int(self.start * 1e9)),
            ("start_ns <= ?", None if self.end is None else int(self.end * 1e9)),
        ):
            if value is not None:
                conds.append(sql)
                params.append(value)
        if self.error_only:
            conds.append("error = 1")
        if self.attribute is not None:
            key, value = self.attribute
            if value and not any(c in value for c in _JSON_ESCAPED):  # cheap text test before parsing
                conds.append("instr(attributes, ?) > 0")
                params.append(value)
            conds.append("CAST(json_extract(attributes, ?) AS TEXT) = ?")
            params += [f'$."{key}"', {"true": "1", "false": "0"}.get(value, value)]
        return conds, params

    def index(self, conn: sqlite3.Connection, where: str, params: list[Any]) -> str:
        if self.error_only:  # errors are rare: their partial index is the shortest walk
            return "spans_error_start"
        if self.operation_name:
            return "spans_name_start"
        if self.service_name:
            return "spans_service_start"
        if self.min_duration is not None or self.max_duration is not None:
            probe = f"SELECT COUNT(*) FROM (SELECT 1 FROM spans INDEXED BY spans_duration {where} LIMIT ?)"
            if conn.execute(probe, [*params, _PROBE_ROWS]).fetchone()[0] < _PROBE_ROWS:
                return "spans_duration"
        return "spans_start"

    def trace_ids(self, conn: sqlite3.Connection) -> list[str]:
        conds, params = self.conditions()
        where = f"WHERE {' AND '.join(conds)}" if conds else ""
        index = self.index(conn, where, params)
        sql = f"SELECT trace_id FROM spans INDEXED BY {index} {where} ORDER BY start_ns DESC"
        cursor = conn.execute(sql, params)
        found: dict[str, None] = {}
        while len(found) < self.limit and (rows := cursor.fetchmany(_FETCH)):
            for (trace_id,) in rows:
                found[trace_id] = None
                if len(found) == self.limit:
                    break
        cursor.close()
        return list(found)


def _check_duration(field: str, value: float | None) -> None:
    if value is None:
        return
    if not (is_number(value) and value >= 0):
        raise ValueError(f"{field}: must be a number of milliseconds >= 0, got {value!r}")


_SUMMARY_COLUMNS = "trace_id, span_id, parent_span_id, service, name, start_ns, end_ns, error"


def _summaries(conn: sqlite3.Connection, trace_ids: list[str]) -> list[dict[str, Any]]:
    if not trace_ids:
        return []
    marks = ",".join("?" * len(trace_ids))
    rows = conn.execute(f"SELECT {_SUMMARY_COLUMNS} FROM spans WHERE trace_id IN ({marks})", trace_ids)
    by_trace: dict[str, list[tuple[Any, ...]]] = {t: [] for t in trace_ids}
    for row in rows:
        by_trace[row[0]].append(row)
    return [summarize(trace_id, spans) for trace_id, spans in by_trace.items() if spans]


async def search_traces(store: SpanStore, query: TraceQuery) -> list[dict[str, Any]]:
    """Summaries of the newest traces matching `query` (see `summarize` for the fields)."""

    def run(conn: sqlite3.Connection) -> list[dict[str, Any]]:
        return _summaries(conn, query.trace_ids(conn))

    return await store.read(run)
