"""An OpenTelemetry SDK span exporter that writes straight into the collector's store.

The control plane traces itself (API requests, health probes) with the same SDK any
service uses; this exporter hands those spans to the in-process collector, no network and
no protobuf round trip. Put it behind a `BatchSpanProcessor`: `export` runs on the SDK's
worker thread and waits for the store's writer thread, never touching the event loop.
It converts every span `/call` makes (two per call, at the default 100% sampling), on a
thread that shares the GIL with the event loop, so meshkit's own `ClientSpan`s are read
from their fields (`_client_record`), not through the SDK's `ReadableSpan` properties,
which build a context and an attribute mapping per read; both give the same record.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import StatusCode

from meshkit.observe.spans import ClientSpan
from meshkit.plane.collector.errors import CollectorError
from meshkit.plane.collector.record import (
    KIND_CLIENT,
    MAX_ATTRIBUTES,
    MAX_VALUE_CHARS,
    SpanRecord,
    bound_value,
    make_record,
)

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
    """Stored attributes: at most MAX_ATTRIBUTES, keys as text, values as `_value` bounds them."""
    stored: dict[str, Any] = {}
    for key, value in list((attributes or {}).items())[:MAX_ATTRIBUTES]:
        kind = value.__class__  # the common values need no bounding: checked here, not by a call
        if (kind is str and len(value) <= MAX_VALUE_CHARS) or (kind is int and -_INT64 <= value < _INT64):
            stored[key if key.__class__ is str else str(key)] = value
        else:
            stored[str(key)] = _value(value)
    return stored


def span_record(span: ReadableSpan) -> SpanRecord | None:
    """The stored form of a finished SDK span (None for one without context or times)."""
    if span.__class__ is ClientSpan:
        return _client_record(span)  # type: ignore[arg-type]
    return _readable_record(span)


def _client_record(span: ClientSpan) -> SpanRecord | None:
    """`_readable_record` for meshkit's own client spans, from their fields (see the docstring)."""
    end, start = span.end_time, span.start_time
    if end is None:
        return None
    parent_id = span.parent_span_id
    read_fields = span._read_fields
    status = span.status
    return make_record(
        span.trace_hex,
        span.span_id.to_bytes(8, "big").hex(),
        parent_id.to_bytes(8, "big").hex() if parent_id else None,
        str(span.resource.attributes.get("service.name", "")),
        span.name,
        KIND_CLIENT,
        start,
        max(end, start),
        status.status_code is StatusCode.ERROR,
        _attributes(span._written if read_fields is None else read_fields(span)),
        _events(span),
        status.description or "",
    )


def _events(span: ReadableSpan) -> list[dict[str, Any]]:
    return [
        {"name": e.name, "time_ns": e.timestamp, "attributes": _attributes(e.attributes)} for e in span.events
    ]


def _readable_record(span: ReadableSpan) -> SpanRecord | None:
    context = span.context
    if context is None or span.start_time is None or span.end_time is None:
        return None
    parent = span.parent
    service = span.resource.attributes.get("service.name", "") if span.resource else ""
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
        _events(span),
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
