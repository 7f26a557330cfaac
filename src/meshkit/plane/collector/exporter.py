"""An OpenTelemetry SDK span exporter that writes straight into the collector's store.

The control plane traces itself (API requests, health probes) with the same SDK any
service uses; this exporter hands those spans to the in-process collector, no network and
no protobuf round trip. Put it behind a `BatchSpanProcessor`: `export` runs on the SDK's
worker thread and waits for the store's writer thread, never touching the event loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import StatusCode

from meshkit.plane.collector.errors import CollectorError
from meshkit.plane.collector.record import MAX_ATTRIBUTES, SpanRecord, bound_value, make_record

if TYPE_CHECKING:
    from meshkit.plane.collector import TraceCollector

_INT64 = 2**63


def _value(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and not -_INT64 <= value < _INT64:
        return str(value)  # JSON storage holds 64-bit integers; OTLP's int_value is int64 too
    if isinstance(value, tuple | list):
        return [_value(v) for v in value[:MAX_ATTRIBUTES]]
    return bound_value(value)


def _attributes(attributes: Any) -> dict[str, Any]:
    items = list((attributes or {}).items())[:MAX_ATTRIBUTES]
    return {str(key): _value(value) for key, value in items}


def span_record(span: ReadableSpan) -> SpanRecord | None:
    """The stored form of a finished SDK span (None for one without context or times)."""
    context = span.context
    if context is None or span.start_time is None or span.end_time is None:
        return None
    parent = span.parent
    service = span.resource.attributes.get("service.name", "") if span.resource else ""
    events = [
        {"name": e.name, "time_ns": e.timestamp, "attributes": _attributes(e.attributes)} for e in span.events
    ]
    return make_record(
        format(context.trace_id, "032x"),
        format(context.span_id, "016x"),
        format(parent.span_id, "016x") if parent is not None and parent.span_id else None,
        str(service),
        span.name,
        span.kind.value + 1,  # the SDK counts kinds from INTERNAL = 0, OTLP from UNSPECIFIED = 0
        span.start_time,
        max(span.end_time, span.start_time),
        span.status.status_code is StatusCode.ERROR,
        _attributes(span.attributes),
        events,
        span.status.description or "",
    )


class CollectorSpanExporter(SpanExporter):
    def __init__(self, collector: TraceCollector) -> None:
        self._collector = collector
        self._shut_down = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shut_down:
            return SpanExportResult.FAILURE
        records = [r for r in map(span_record, spans) if r is not None]
        try:
            self._collector.accepted_spans += self._collector.store.insert_blocking(records)
        except (CollectorError, RuntimeError):  # RuntimeError: the store was closed
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self._shut_down = True

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
