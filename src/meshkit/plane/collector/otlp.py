"""Decoding OTLP/HTTP trace exports (protobuf and JSON, gzip or deflate) into `SpanRecord`s.

Follows the OTLP specification (opentelemetry-proto, "OTLP/HTTP"): the body is an
`ExportTraceServiceRequest`, as binary protobuf (`application/x-protobuf`) or as OTLP/JSON
(`application/json`). OTLP/JSON differs from proto3's JSON mapping in one place: trace and
span ids are hex strings, not base64, so they are rewritten before `json_format.ParseDict`.
Sizes are capped before and after decompression (a gzip bomb stops at `max_bytes`). A span
with a malformed id or negative duration is rejected alone and reported through OTLP's
partial-success response, as the spec asks, rather than failing the whole export.
"""

from __future__ import annotations

import base64
import itertools
import zlib
from typing import Any, NamedTuple

import orjson
from google.protobuf import json_format  # type: ignore[import-untyped]
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from meshkit.plane.collector.errors import BadPayload, PayloadTooLarge, UnsupportedMediaType
from meshkit.plane.collector.record import MAX_ATTRIBUTES, SpanRecord, bound_value, make_record

DEFAULT_MAX_BYTES = 8 * 1024 * 1024
PROTOBUF, JSON = "protobuf", "json"
_MEDIA = {"application/x-protobuf": PROTOBUF, "application/protobuf": PROTOBUF, "application/json": JSON}
_SCALARS = frozenset({"string_value", "bool_value", "int_value", "double_value"})
_STATUS_ERROR = 2


class DecodeResult(NamedTuple):
    spans: list[SpanRecord]
    rejected: int  # spans refused one by one (bad ids, end before start)
    message: str  # why the first one was refused, for the partial-success response


def media_format(content_type: str | None) -> str:
    """`protobuf` or `json` for an OTLP Content-Type (parameters ignored), else 415."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    fmt = _MEDIA.get(media)
    if fmt is None:
        raise UnsupportedMediaType(
            f"content-type: must be application/x-protobuf or application/json, got {content_type!r}"
        )
    return fmt


def decompress(body: bytes, content_encoding: str | None, max_bytes: int) -> bytes:
    """Undo gzip/deflate, stopping at `max_bytes` of output so a bomb costs nothing."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise UnsupportedMediaType(
            f"content-encoding: must be gzip, deflate or identity, got {content_encoding!r}"
        )
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise BadPayload(f"body: not valid {encoding} data ({exc})") from None
    if len(out) > max_bytes or inflater.unconsumed_tail:
        raise PayloadTooLarge(f"body: decompresses to more than the limit of {max_bytes} bytes")
    if not inflater.eof:
        raise BadPayload(f"body: truncated {encoding} stream")
    return out


def decode_traces(
    body: bytes, content_type: str, *, max_bytes: int = DEFAULT_MAX_BYTES, content_encoding: str | None = None
) -> DecodeResult:
    """Decode one OTLP/HTTP export body; raises a `CollectorError` carrying its HTTP status."""
    fmt = media_format(content_type)
    if len(body) > max_bytes:
        raise PayloadTooLarge(f"body: {len(body)} bytes is over the limit of {max_bytes} bytes")
    raw = decompress(body, content_encoding, max_bytes)
    request = _parse_json(raw) if fmt == JSON else _parse_protobuf(raw)
    return records_from_request(request)


def _parse_protobuf(raw: bytes) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(raw)
    except (DecodeError, RecursionError, ValueError) as exc:
        raise BadPayload(f"body: not an OTLP ExportTraceServiceRequest protobuf ({exc})") from None
    return request


def _parse_json(raw: bytes) -> ExportTraceServiceRequest:
    try:
        data = orjson.loads(raw)
        if not isinstance(data, dict):
            raise BadPayload("body: OTLP/JSON must be an object with resourceSpans")
        for resource_spans in data.get("resourceSpans") or ():
            for scope_spans in resource_spans.get("scopeSpans") or ():
                for span in scope_spans.get("spans") or ():
                    _ids_to_base64(span, ("traceId", "spanId", "parentSpanId"))
                    for link in span.get("links") or ():
                        _ids_to_base64(link, ("traceId", "spanId"))
        request = ExportTraceServiceRequest()
        json_format.ParseDict(data, request, ignore_unknown_fields=True)
        return request
    except BadPayload:
        raise
    except (orjson.JSONDecodeError, json_format.ParseError, ValueError, TypeError, AttributeError) as exc:
        raise BadPayload(f"body: not an OTLP/JSON ExportTraceServiceRequest ({exc})") from None
    except RecursionError:
        raise BadPayload("body: OTLP/JSON nested too deeply") from None


def _ids_to_base64(obj: dict[str, Any], keys: tuple[str, ...]) -> None:
    for key in keys:
        value = obj.get(key)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise BadPayload(f"{key}: must be a hex string, got {type(value).__name__}")
        try:
            obj[key] = base64.b64encode(bytes.fromhex(value)).decode("ascii")
        except ValueError:
            raise BadPayload(f"{key}: must be a hex string (OTLP/JSON), got {value[:40]!r}") from None


def records_from_request(request: ExportTraceServiceRequest) -> DecodeResult:
    spans: list[SpanRecord] = []
    rejected = 0
    message = ""
    for resource_spans in request.resource_spans:
        service = ""
        for kv in resource_spans.resource.attributes:
            if kv.key == "service.name":
                service = kv.value.string_value
                break
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                trace_id, span_id, parent = span.trace_id, span.span_id, span.parent_span_id
                problem = ""
                if len(trace_id) != 16 or not any(trace_id):
                    problem = "traceId: must be 16 bytes, not all zero"
                elif len(span_id) != 8 or not any(span_id):
                    problem = "spanId: must be 8 bytes, not all zero"
                elif parent and len(parent) != 8:
                    problem = "parentSpanId: must be empty or 8 bytes"
                elif span.start_time_unix_nano == 0 or span.end_time_unix_nano < span.start_time_unix_nano:
                    problem = "endTimeUnixNano: must be >= startTimeUnixNano > 0"
                if problem:
                    rejected += 1
                    message = message or f"{problem} (span {span.name!r})"
                    continue
                events = [
                    {"name": e.name, "time_ns": e.time_unix_nano, "attributes": _attributes(e.attributes)}
                    for e in span.events
                ]
                spans.append(
                    make_record(
                        trace_id.hex(),
                        span_id.hex(),
                        parent.hex() if parent and any(parent) else None,
                        service,
                        span.name,
                        span.kind,
                        span.start_time_unix_nano,
                        span.end_time_unix_nano,
                        span.status.code == _STATUS_ERROR,
                        _attributes(span.attributes),
                        events,
                        span.status.message,
                    )
                )
    return DecodeResult(spans, rejected, message)


def _attributes(kvs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in itertools.islice(kvs, MAX_ATTRIBUTES):
        out[kv.key] = bound_value(any_value(kv.value))
    return out


def any_value(value: AnyValue) -> Any:
    """An OTLP AnyValue as plain JSON-able Python (bytes become hex)."""
    which = value.WhichOneof("value")
    if which in _SCALARS:
        return getattr(value, which)
    if which == "array_value":
        return [any_value(v) for v in itertools.islice(value.array_value.values, MAX_ATTRIBUTES)]
    if which == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    if which == "bytes_value":
        return value.bytes_value.hex()
    return None
