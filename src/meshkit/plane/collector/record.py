"""One stored span: the shape every input (OTLP protobuf, OTLP JSON, the in-process SDK) becomes.

Kinds use OTLP's numbering (1 internal, 2 server, 3 client, 4 producer, 5 consumer). The
callee of a client span is read from its attributes in the order below: meshkit's own
client tracing sets `meshkit.service`; other SDKs set `peer.service` or `server.address`.
Attributes are bounded like the OpenTelemetry SDK's span limits (128 per span) so one
noisy sender cannot fill the store.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

KIND_UNSPECIFIED, KIND_INTERNAL, KIND_SERVER, KIND_CLIENT, KIND_PRODUCER, KIND_CONSUMER = range(6)
KIND_NAMES = ("unspecified", "internal", "server", "client", "producer", "consumer")
CALLER_KINDS = (KIND_CLIENT, KIND_PRODUCER)
CALLEE_KINDS = (KIND_SERVER, KIND_CONSUMER)

PEER_KEYS = ("meshkit.service", "peer.service", "server.address", "net.peer.name")
MAX_ATTRIBUTES = 128
MAX_EVENTS = 32
MAX_VALUE_CHARS = 4096
UNKNOWN_SERVICE = "unknown_service"


class SpanRecord(NamedTuple):
    trace_id: str  # 32 lowercase hex chars
    span_id: str  # 16 lowercase hex chars
    parent_span_id: str | None
    service: str
    name: str
    kind: int
    start_ns: int
    end_ns: int
    duration_ms: float
    error: bool
    peer_service: str | None
    attributes: dict[str, Any]
    events: list[dict[str, Any]]
    status_message: str


def is_number(value: object) -> bool:
    """A finite int or float, not a bool: what duration, time and window parameters must be."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def bound_value(value: Any) -> Any:
    """Cut long strings (and long lists) to the limit; other scalars pass as they are."""
    if isinstance(value, str):
        return value if len(value) <= MAX_VALUE_CHARS else value[:MAX_VALUE_CHARS]
    if isinstance(value, list) and len(value) > MAX_ATTRIBUTES:
        return value[:MAX_ATTRIBUTES]
    return value


def peer_service(kind: int, attributes: dict[str, Any]) -> str | None:
    """The service a client or producer span calls, as its attributes name it."""
    if kind not in CALLER_KINDS:
        return None
    for key in PEER_KEYS:
        value = attributes.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def make_record(
    trace_id: str,
    span_id: str,
    parent_span_id: str | None,
    service: str,
    name: str,
    kind: int,
    start_ns: int,
    end_ns: int,
    error: bool,
    attributes: dict[str, Any],
    events: list[dict[str, Any]],
    status_message: str = "",
) -> SpanRecord:
    return SpanRecord(
        trace_id,
        span_id,
        parent_span_id or None,
        service or UNKNOWN_SERVICE,
        name,
        kind,
        start_ns,
        end_ns,
        (end_ns - start_ns) / 1e6,
        error,
        peer_service(kind, attributes),
        attributes,
        events[:MAX_EVENTS],
        status_message[:MAX_VALUE_CHARS],
    )
