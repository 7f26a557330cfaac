"""Forwarding spans to any OTLP/HTTP endpoint: Jaeger, Tempo, an OpenTelemetry Collector.

The embedded trace store serves a small mesh; a deployment that outgrows it points
`otlp_exporter` at its tracing back end instead of (or beside) it:

    Tracer("orders", processors=[otlp_exporter("http://tempo:4318")])

Spans are sent as OTLP/HTTP protobuf (the OpenTelemetry exporter, its request written by
`meshkit.observe.otlp_wire` at about an eighth of the SDK encoder's CPU per span) from
meshkit's `BatchingSpanProcessor`, so export runs on a background thread in batches and
never on the data path; under the GIL that thread's CPU is still the process's. A base URL
with no path gets the standard `/v1/traces` appended.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from meshkit.observe.batch import BatchingSpanProcessor
from meshkit.observe.wire_exporter import WireOTLPSpanExporter

TRACES_PATH = "/v1/traces"


def otlp_endpoint(endpoint: str) -> str:
    """`endpoint` checked as an http(s) URL, with `/v1/traces` added when it has no path."""
    parts = urlsplit(endpoint) if isinstance(endpoint, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"endpoint: must be an http:// or https:// URL with a host, got {endpoint!r}")
    if parts.path in ("", "/"):
        return parts._replace(path=TRACES_PATH).geturl()
    return endpoint


def otlp_exporter(
    endpoint: str,
    headers: Mapping[str, str] | None = None,
    *,
    timeout: float = 10.0,
    max_queue_size: int = 2048,
    schedule_delay_millis: float = 5000,
) -> BatchingSpanProcessor:
    """A span processor that batches spans and posts them to `endpoint` as OTLP/HTTP protobuf."""
    url = otlp_endpoint(endpoint)
    if headers is not None and not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        raise ValueError(f"headers: must map header names to string values, got {headers!r}")
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise ValueError(f"timeout: must be a number of seconds > 0, got {timeout!r}")
    exporter = WireOTLPSpanExporter(endpoint=url, headers=dict(headers or {}), timeout=timeout)
    return BatchingSpanProcessor(
        exporter, max_queue_size=max_queue_size, schedule_delay_millis=schedule_delay_millis
    )
