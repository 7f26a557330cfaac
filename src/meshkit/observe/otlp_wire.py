"""OTLP trace export requests written straight in protobuf wire format, at a fraction of the SDK's cost.

The OpenTelemetry exporter builds a protobuf object per span, attribute and value
(`opentelemetry.exporter.otlp.proto.common.trace_encoder.encode_spans`), then serializes
the tree: ~70 us of CPU per meshkit span, which the export thread takes from the event
loop under the GIL. `encode_spans` here writes the same `ExportTraceServiceRequest` as
bytes directly (the protobuf encoding guide: varint, length-delimited and fixed64 fields;
field numbers from opentelemetry-proto's trace.proto and common.proto), with every tag
precomputed, each resource and scope encoded once per batch, the kind and status fields
reused while consecutive spans share those objects, and a span attribute's field reused
when its key and value (a str or an int) come back in the same batch, as a mesh's
service, method and status codes do. Each span is written inline in the loop of
`encode_spans`: one Python frame per span, not one per field.

The bytes are the SDK encoder's, field for field (tests/observe/test_otlp_wire.py parses
both): spans grouped by resource, then by scope, in first-seen order; `flags` carries the
has/is-remote-parent bits only; a link's trace_state is not written. An attribute the SDK
cannot encode (an unsupported type, an int outside int64, a string with a lone surrogate)
is logged and left out, as the SDK does. One deliberate difference: a lone surrogate in a
span or event name, a status message, a trace state or a resource/scope name, for which
the SDK fails the whole batch, is sent as "?" (UTF-8 with errors="replace").
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import DEFAULT_TRACE_STATE, Link, SpanKind, Status, StatusCode, TraceState

_logger = logging.getLogger(__name__)

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_MASK64 = (1 << 64) - 1
_BYTE = tuple(bytes((i,)) for i in range(128))  # the varint of each number below 128
_LENGTHS: dict[int, bytes] = {}  # two-byte varints met so far (at most 16256)
_DOUBLE = struct.Struct("<Bd").pack  # tag + IEEE 754 little-endian (AnyValue.double_value)
_FIXED64 = struct.Struct("<BQ").pack  # tag + fixed64 (one time)
_TIMES = struct.Struct("<BQBQ").pack  # Span.start_time_unix_nano (7) and end_time_unix_nano (8)
# Enum members are looked up by id: an Enum's __hash__ is a Python call, a member lives forever.
_KIND = {id(kind): b"\x30" + _BYTE[kind.value + 1] for kind in SpanKind}  # Span.kind: SPAN_KIND_* = value + 1
_STATUS = {
    id(code): b"\x7a\x02\x18" + _BYTE[code.value] if code.value else b"\x7a\x00" for code in StatusCode
}
# SpanFlags (fixed32): 0x100, the parent's is_remote is known; 0x200, it is True. [no parent or local, remote]
_SPAN_FLAGS = (b"\x85\x01\x00\x01\x00\x00", b"\x85\x01\x00\x03\x00\x00")  # Span.flags (16)
_LINK_FLAGS = (b"\x35\x00\x01\x00\x00", b"\x35\x00\x03\x00\x00")  # Link.flags (6)
_NO_SCOPE = (b"\x0a\x00", b"")  # ScopeSpans.scope present and empty, no schema_url (as the SDK)


def encode_spans(spans: Sequence[ReadableSpan]) -> bytes:
    """`spans` as a serialized OTLP `ExportTraceServiceRequest`; b"" for no spans."""
    groups: dict[Resource, dict[InstrumentationScope | None, list[bytes]]] = {}  # by equality, as the SDK
    by_identity: dict[tuple[int, int], list[bytes]] = {}  # the same objects again: no hashing of them
    held: list[object] = []  # keeps each resource and scope alive, so their ids stay theirs
    names: dict[str, bytes] = {}
    known: dict[str, dict[object, bytes]] = {}  # span attribute fields by key, then value
    last_resource = last_scope = fields = None
    last_kind: SpanKind | None = None
    last_status: Status | None = None
    kind_field = status_field = b""  # a batch's spans share their kind and status objects, mostly
    for span in spans:
        resource = span.resource
        scope = span.instrumentation_scope or None
        if resource is not last_resource or scope is not last_scope or fields is None:
            fields = by_identity.get((id(resource), id(scope)))
            if fields is None:
                held += (resource, scope)
                scopes = groups.setdefault(resource, {})
                fields = by_identity[id(resource), id(scope)] = scopes.setdefault(scope, [])
            last_resource, last_scope = resource, scope
        # Span: its fields in field-number order; each part is b"" where the SDK leaves the field unset.
        context = span.context
        parent = span.parent
        state = context.trace_state
        name = span.name
        name_field = names.get(name)
        if name_field is None:
            name_field = names[name] = _field(b"\x2a", _text(name)) if name else b""
        kind = span.kind
        if kind is not last_kind:
            kind_field = _KIND[id(kind)]
            last_kind = kind
        start, end = span.start_time, span.end_time
        if start and end:
            times = _TIMES(0x39, start, 0x41, end)
        else:
            times = (_FIXED64(0x39, start) if start else b"") + (_FIXED64(0x41, end) if end else b"")
        attributes = span.attributes
        events = span.events
        links = span.links
        status = span.status
        if status is not last_status:
            status_field = b"" if status is None else _status(status)
            last_status = status
        body = b"".join(
            (
                b"\x0a\x10",
                context.trace_id.to_bytes(16, "big"),
                b"\x12\x08",
                context.span_id.to_bytes(8, "big"),
                _trace_state(state) if state is not DEFAULT_TRACE_STATE and state else b"",
                b"\x22\x08" + parent.span_id.to_bytes(8, "big") if parent else b"",
                name_field,
                kind_field,
                times,
                _span_attributes(attributes, known) if attributes else b"",
                b"\x50" + _varint(dropped) if (dropped := span.dropped_attributes) else b"",
                b"".join([_event(event) for event in events]) if events else b"",
                b"\x60" + _varint(dropped) if (dropped := span.dropped_events) else b"",
                b"".join([_link(link) for link in links]) if links else b"",
                b"\x70" + _varint(dropped) if (dropped := span.dropped_links) else b"",
                status_field,
                _SPAN_FLAGS[bool(parent and parent.is_remote)],
            )
        )
        size = len(body)
        fields.append(b"\x12" + (_BYTE[size] if size < 128 else _LENGTHS.get(size) or _length(size)) + body)
    return b"".join([_resource_spans(resource, scopes) for resource, scopes in groups.items()])


def _resource_spans(resource: Resource, scopes: dict[InstrumentationScope | None, list[bytes]]) -> bytes:
    parts = [_field(b"\x0a", _attributes(resource.attributes, b"\x0a"))]  # ResourceSpans.resource
    for scope, spans in scopes.items():
        scope_field, schema_url = _scope(scope)
        parts.append(_field(b"\x12", b"".join([scope_field, *spans, schema_url])))  # .scope_spans
    if resource.schema_url:
        parts.append(_field(b"\x1a", _text(resource.schema_url)))
    return _field(b"\x0a", b"".join(parts))  # ExportTraceServiceRequest.resource_spans


def _scope(scope: InstrumentationScope | None) -> tuple[bytes, bytes]:
    """ScopeSpans' `scope` field and its `schema_url` field."""
    if scope is None:
        return _NO_SCOPE
    body = _field(b"\x0a", _text(scope.name)) if scope.name else b""
    if scope.version:
        body += _field(b"\x12", _text(scope.version))
    body += _attributes(scope.attributes, b"\x1a")
    return _field(b"\x0a", body), _field(b"\x1a", _text(scope.schema_url)) if scope.schema_url else b""


def _trace_state(state: TraceState) -> bytes:
    return _field(b"\x1a", _text(",".join([f"{key}={value}" for key, value in state.items()])))


def _status(status: Status) -> bytes:
    description = status.description
    if description:
        code = status.status_code.value
        return _field(b"\x7a", _field(b"\x12", _text(description)) + (b"\x18" + _BYTE[code] if code else b""))
    return _STATUS[id(status.status_code)]


def _event(event: Event) -> bytes:
    body = _FIXED64(0x09, event.timestamp) if event.timestamp else b""
    body += _field(b"\x12", _text(event.name)) if event.name else b""
    body += _attributes(event.attributes, b"\x1a")
    body += b"\x20" + _varint(event.dropped_attributes) if event.dropped_attributes else b""
    return _field(b"\x5a", body)  # Span.events


def _link(link: Link) -> bytes:
    context = link.context
    body = (
        b"\x0a\x10" + context.trace_id.to_bytes(16, "big") + b"\x12\x08" + context.span_id.to_bytes(8, "big")
    )
    body += _attributes(link.attributes, b"\x22")
    body += b"\x28" + _varint(link.dropped_attributes) if link.dropped_attributes else b""
    return _field(b"\x6a", body + _LINK_FLAGS[context.is_remote])  # Span.links (no trace_state, as the SDK)


def _span_attributes(attributes: Mapping[str, Any], known: dict[str, dict[object, bytes]]) -> bytes:
    """Span.attributes fields; one with a str or int value is made once per batch, kept by key then
    value (never one with a bool: True == 1). Subscripts: a hit costs a third of a `.get()` call."""
    fields: list[bytes] = []
    append = fields.append
    for key, value in attributes.items():
        kind = value.__class__
        if kind is str or kind is int:
            try:
                append(known[key][value])
            except KeyError:
                field = known.setdefault(key, {})[value] = _attribute(b"\x4a", key, value)
                append(field)
        else:
            append(_attribute(b"\x4a", key, value))
    return b"".join(fields)


def _attributes(attributes: Mapping[str, Any] | None, tag: bytes) -> bytes:
    """Each attribute as a `tag` KeyValue field."""
    return b"".join([_attribute(tag, key, value) for key, value in attributes.items()]) if attributes else b""


def _attribute(tag: bytes, key: str, value: object) -> bytes:
    """A `tag` KeyValue field; b"" for one the SDK cannot encode, logged and left out as there."""
    try:
        return _field(tag, _key_value(key, value))
    except Exception as error:
        _logger.exception("Failed to encode key %s: %s", key, error)
        return b""


def _key_value(key: str, value: object) -> bytes:
    if isinstance(key, str):
        encoded = key.encode()
    elif isinstance(key, bytes):  # protobuf takes UTF-8 bytes for a string field
        key.decode()
        encoded = key
    else:
        raise TypeError(f"attribute key must be a str, got {type(key)}")
    return (_field(b"\x0a", encoded) if encoded else b"") + _field(b"\x12", _any_value(value))


def _any_value(value: object) -> bytes:
    """An AnyValue, as the SDK's `_encode_value`: the same types, checked in the same order."""
    if value.__class__ is str:  # the commonest first: only a str is of class str
        return _field(b"\x0a", value.encode())
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _field(b"\x0a", value.encode())  # a lone surrogate raises: the attribute is left out
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise ValueError(f"Value out of range: {value}")
        return b"\x18" + _varint(value & _MASK64)  # a negative int64 is its 64-bit two's complement
    if isinstance(value, float):
        return _DOUBLE(0x21, value)
    if isinstance(value, bytes):
        return _field(b"\x3a", value)
    if isinstance(value, Sequence):
        return _field(b"\x2a", b"".join([_field(b"\x0a", _any_value(item)) for item in value]))
    if isinstance(value, Mapping):
        pairs = [_field(b"\x0a", _key_value(str(k), v)) for k, v in value.items()]
        return _field(b"\x32", b"".join(pairs))
    raise TypeError(f"Invalid type {type(value)} of value {value}")


def _text(text: str) -> bytes:
    try:
        return text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")


def _field(tag: bytes, body: bytes) -> bytes:
    """A length-delimited field: tag, length as a varint, body."""
    size = len(body)
    if size < 128:
        return tag + _BYTE[size] + body
    return tag + (_LENGTHS.get(size) or _length(size)) + body


def _length(size: int) -> bytes:
    """A length's varint; one of two bytes (a span's, typically) is kept, as building one costs more."""
    encoded = _varint(size)
    if size < 16384:
        _LENGTHS[size] = encoded
    return encoded


def _varint(number: int) -> bytes:
    if number < 128:
        return _BYTE[number]
    out = bytearray()
    while number > 127:
        out.append(number & 0x7F | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)
