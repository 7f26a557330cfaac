"""Span builders for the collector's tests: OTLP protobuf requests and stored records."""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from meshkit.plane.collector.record import KIND_SERVER, SpanRecord, make_record

WALL = 1_700_000_000.0  # FakeClock's default wall time


def tid(n: int) -> str:
    return f"{n:032x}"


def sid(n: int) -> str:
    return f"{n:016x}"


def record(
    trace: int,
    span: int,
    parent: int | None = None,
    *,
    service: str = "svc",
    name: str = "op",
    kind: int = KIND_SERVER,
    start: float = WALL,
    duration_ms: float = 10.0,
    error: bool = False,
    attributes: dict[str, Any] | None = None,
) -> SpanRecord:
    start_ns = int(start * 1e9)
    return make_record(
        tid(trace),
        sid(span),
        sid(parent) if parent is not None else None,
        service,
        name,
        kind,
        start_ns,
        start_ns + int(duration_ms * 1e6),
        error,
        attributes or {},
        [],
    )


def _any(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    return AnyValue(string_value=str(value))


def otlp_span(
    trace: int,
    span: int,
    parent: int | None = None,
    *,
    name: str = "op",
    kind: int = KIND_SERVER,
    start: float = WALL,
    duration_ms: float = 10.0,
    error: bool = False,
    attributes: dict[str, Any] | None = None,
) -> Span:
    start_ns = int(start * 1e9)
    return Span(
        trace_id=bytes.fromhex(tid(trace)),
        span_id=bytes.fromhex(sid(span)),
        parent_span_id=bytes.fromhex(sid(parent)) if parent is not None else b"",
        name=name,
        kind=kind,  # type: ignore[arg-type]
        start_time_unix_nano=start_ns,
        end_time_unix_nano=start_ns + int(duration_ms * 1e6),
        attributes=[KeyValue(key=k, value=_any(v)) for k, v in (attributes or {}).items()],
        status=Status(code=Status.STATUS_CODE_ERROR if error else Status.STATUS_CODE_OK),
    )


def otlp_request(by_service: dict[str, list[Span]]) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    for service, spans in by_service.items():
        resource_spans = request.resource_spans.add()
        resource_spans.resource.attributes.add(key="service.name").value.string_value = service
        resource_spans.scope_spans.add().spans.extend(spans)
    return request
