"""OTLP forwarding: spans reach a real OTLP/HTTP endpoint on 127.0.0.1 as protobuf."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from meshkit.observe.export import otlp_endpoint, otlp_exporter
from meshkit.observe.tracing import Tracer
from tests.conftest import StartUpstream


async def test_spans_are_posted_to_the_otlp_endpoint(upstreams: StartUpstream) -> None:
    received: list[ExportTraceServiceRequest] = []
    seen_headers: list[dict[str, str]] = []

    async def collector(request: web.Request) -> web.StreamResponse:
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.read())
        received.append(message)
        seen_headers.append(dict(request.headers))
        body = ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=body, content_type="application/x-protobuf")

    up = await upstreams("collector", collector)
    processor = otlp_exporter(f"http://127.0.0.1:{up.port}", headers={"Authorization": "Bearer t0k"})
    tracer = Tracer("orders", processors=[processor])
    span = tracer.start_span("work")
    span.set_attribute("meshkit.service", "stock")
    span.end()
    assert await asyncio.to_thread(tracer.force_flush, 10_000)  # the exporter posts from its own thread
    await asyncio.to_thread(tracer.shutdown)

    assert up.paths == ["/v1/traces"]
    assert seen_headers[0]["Authorization"] == "Bearer t0k"
    assert seen_headers[0]["Content-Type"] == "application/x-protobuf"
    [resource_spans] = received[0].resource_spans
    service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}["service.name"]
    assert service == "orders"
    [exported] = resource_spans.scope_spans[0].spans
    assert exported.name == "work"
    assert exported.trace_id == span.get_span_context().trace_id.to_bytes(16, "big")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://tempo:4318", "http://tempo:4318/v1/traces"),
        ("https://otel.example.com/", "https://otel.example.com/v1/traces"),
        ("http://jaeger:4318/custom/traces", "http://jaeger:4318/custom/traces"),
    ],
)
def test_endpoint_gets_the_standard_path_when_it_has_none(given: str, expected: str) -> None:
    assert otlp_endpoint(given) == expected


@pytest.mark.parametrize("bad", ["tempo:4318", "grpc://tempo:4317", "http://", "", "/v1/traces"])
def test_endpoint_must_be_an_http_url(bad: str) -> None:
    with pytest.raises(ValueError, match=r"^endpoint: must be an http:// or https:// URL"):
        otlp_exporter(bad)


def test_timeout_and_headers_are_validated() -> None:
    with pytest.raises(ValueError, match=r"^timeout:"):
        otlp_exporter("http://tempo:4318", timeout=0)
    with pytest.raises(ValueError, match=r"^headers:"):
        otlp_exporter("http://tempo:4318", headers={"X-Key": 1})  # type: ignore[dict-item]
