"""The trace collector: OTLP/HTTP in, spans in SQLite, search, whole traces and a dependency graph.

Any OpenTelemetry SDK's OTLP/HTTP exporter can send to it (protobuf or JSON, gzip or not);
meshkit's control plane also feeds it its own spans in process (`CollectorSpanExporter`).
`TraceCollector` is the one object the API mounts: each route is a one-line call, e.g.
`reply = await collector.handle_export(body, content_type, content_encoding)`. The search
API keeps the seed's names (`search_traces`, `get_service_dependencies`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from meshkit.plane.collector.errors import (
    BadPayload,
    CollectorError,
    PayloadTooLarge,
    StoreUnavailable,
    UnsupportedMediaType,
)
from meshkit.plane.collector.exporter import CollectorSpanExporter
from meshkit.plane.collector.graph import get_service_dependencies
from meshkit.plane.collector.otlp import DEFAULT_MAX_BYTES, JSON, DecodeResult, decode_traces
from meshkit.plane.collector.record import SpanRecord
from meshkit.plane.collector.reply import OtlpReply, error_reply, export_reply
from meshkit.plane.collector.search import TraceQuery, search_traces
from meshkit.plane.collector.store import SpanStore
from meshkit.plane.collector.tree import get_trace


class TraceCollector:
    """Receives OTLP exports into a `SpanStore` and answers trace queries from it."""

    def __init__(self, store: SpanStore | None = None, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
            raise ValueError(f"max_bytes: must be an integer >= 1, got {max_bytes!r}")
        self.store = store if store is not None else SpanStore()
        self.max_bytes = max_bytes
        self.accepted_spans = 0  # stored (duplicates of stored spans not counted)
        self.rejected_spans = 0  # refused one by one inside an accepted export (bad ids, times)
        self.refused_exports = 0  # whole exports answered 4xx/503

    @property
    def dropped_spans(self) -> int:
        """Spans retention removed or refused (too old, or beyond `max_spans`)."""
        return self.store.dropped_spans

    async def ingest(
        self, body: bytes, content_type: str, content_encoding: str | None = None
    ) -> DecodeResult:
        """Decode and store one export; raises `CollectorError` (with `.status`) when refused."""
        try:
            decoded = await asyncio.to_thread(
                decode_traces, body, content_type, max_bytes=self.max_bytes, content_encoding=content_encoding
            )
            self.accepted_spans += await self.store.insert(decoded.spans)
        except CollectorError:
            self.refused_exports += 1
            raise
        self.rejected_spans += decoded.rejected
        return decoded

    async def handle_export(
        self, body: bytes, content_type: str, content_encoding: str | None = None
    ) -> OtlpReply:
        """The whole POST /v1/traces: an `OtlpReply(status, body, content_type)`, never an exception
        for anything the sender did (400, 413, 415) or the store did (503)."""
        fmt = JSON if "json" in (content_type or "").lower() else "protobuf"
        try:
            decoded = await self.ingest(body, content_type, content_encoding)
        except CollectorError as exc:
            return error_reply(fmt, exc)
        return export_reply(fmt, decoded.rejected, decoded.message)

    async def search_traces(
        self,
        service_name: str | None = None,
        operation_name: str | None = None,
        min_duration: float | None = None,
        max_duration: float | None = None,
        error_only: bool = False,
        limit: int = 20,
        *,
        attribute: tuple[str, str] | None = None,
        start: float | None = None,
        end: float | None = None,
    ) -> list[dict[str, Any]]:
        """Newest traces with a span matching every filter (durations in ms, times in unix seconds).

        Each result: trace_id, root_operation, root_service, start, duration_ms, span_count,
        error_count, services. Bad parameters raise ValueError naming the field."""
        query = TraceQuery(
            service_name, operation_name, min_duration, max_duration, error_only, limit, attribute, start, end
        )
        return await search_traces(self.store, query)

    async def get_trace(self, trace_id: str) -> dict[str, Any] | None:
        """{trace_id, summary, spans: [tree]}, or None for an unknown trace; ValueError on a bad id."""
        return await get_trace(self.store, trace_id)

    async def get_service_dependencies(self, window: float | None = None) -> list[dict[str, Any]]:
        """Edges {caller, callee, calls, errors, error_rate, p50_ms, p99_ms} over the last `window` s."""
        return await get_service_dependencies(self.store, window)

    async def close(self) -> None:
        await asyncio.to_thread(self.store.close)


__all__ = [
    "BadPayload",
    "CollectorError",
    "CollectorSpanExporter",
    "DecodeResult",
    "OtlpReply",
    "PayloadTooLarge",
    "SpanRecord",
    "SpanStore",
    "StoreUnavailable",
    "TraceCollector",
    "TraceQuery",
    "UnsupportedMediaType",
    "decode_traces",
]
