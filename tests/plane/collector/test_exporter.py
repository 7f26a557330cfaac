"""The in-process exporter: the control plane's own SDK spans land in the store, no network."""

from __future__ import annotations

import asyncio

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult
from opentelemetry.trace import SpanKind

from meshkit.clock import SYSTEM_CLOCK
from meshkit.plane.collector import CollectorSpanExporter, SpanStore, TraceCollector


async def test_sdk_spans_go_straight_into_the_store() -> None:
    collector = TraceCollector(SpanStore(None, clock=SYSTEM_CLOCK))
    exporter = CollectorSpanExporter(collector)
    provider = TracerProvider(resource=Resource.create({"service.name": "meshkit-plane"}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = provider.get_tracer("plane")
    with tracer.start_as_current_span("GET /topology", kind=SpanKind.SERVER) as span:
        span.set_attribute("http.route", "/topology")
        span.set_attribute("huge", 2**70)  # beyond int64: kept, as text
        span.set_attribute("tags", ["a", "b"])
        span.add_event("cache miss", {"key": "k"})
        with tracer.start_as_current_span("probe", kind=SpanKind.CLIENT) as probe:
            probe.set_attribute("meshkit.service", "api")
    await asyncio.to_thread(provider.shutdown)

    (found,) = await collector.search_traces(
        service_name="meshkit-plane", attribute=("http.route", "/topology")
    )
    assert (found["span_count"], found["root_operation"]) == (2, "GET /topology")
    trace = await collector.get_trace(found["trace_id"])
    assert trace is not None
    (root,) = trace["spans"]
    assert root["attributes"] == {"http.route": "/topology", "huge": str(2**70), "tags": ["a", "b"]}
    assert [e["name"] for e in root["events"]] == ["cache miss"] and root["kind"] == "server"
    assert root["children"][0]["peer_service"] == "api"
    assert collector.accepted_spans == 2
    assert exporter.export([]) is SpanExportResult.FAILURE  # shut down with the provider
    await collector.close()


async def test_export_after_close_fails_cleanly() -> None:
    collector = TraceCollector(SpanStore(None, clock=SYSTEM_CLOCK))
    await collector.close()
    assert CollectorSpanExporter(collector).export([]) is SpanExportResult.FAILURE
