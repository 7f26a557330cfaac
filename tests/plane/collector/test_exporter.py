"""The in-process exporter: the control plane's own SDK spans land in the store, no network."""

from __future__ import annotations

import asyncio
import contextlib

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult
from opentelemetry.trace import SpanKind

from meshkit import Request, Response
from meshkit.client import MeshClient
from meshkit.clock import SYSTEM_CLOCK
from meshkit.errors import ConnectError
from meshkit.observe.spans import ClientSpan
from meshkit.observe.tracing import Tracer
from meshkit.plane.collector import CollectorSpanExporter, SpanStore, TraceCollector
from meshkit.plane.collector.exporter import _client_record, _readable_record, span_record
from meshkit.transport.mock import MockTransport


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


class _Keep:
    """A processor keeping every ended span, for reading them back."""

    def __init__(self) -> None:
        self.spans: list[ClientSpan] = []

    def on_start(self, span: object, parent_context: object = None) -> None:
        pass

    def on_end(self, span: ClientSpan) -> None:
        self.spans.append(span)

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


async def test_client_spans_are_read_from_their_fields_into_the_same_record() -> None:
    kept = _Keep()
    tracer = Tracer("caller", processors=[kept])  # type: ignore[list-item]

    def answer(request: Request) -> Response:
        if request.path == "/down":
            raise ConnectError("refused", "api-0")
        return Response(503 if request.path == "/busy" else 200)

    client = MeshClient.static({"api": [("127.0.0.1", 9)]}, tracer=tracer, transport=MockTransport(answer))
    for path in ("/ok", "/busy", "/down"):
        with contextlib.suppress(ConnectError):  # /down: the failed call's spans are recorded all the same
            await client.call(Request("GET", path, service="api", timeout=5))
    await client.aclose()
    extra = tracer.sink.start("extra", None)  # a span with every kind of value a layer may add
    extra.set_attributes({"huge": 2**70, "long": "x" * 5000, "tags": ["a", 2**64], "ok": True, "f": 1.5})
    extra.set_attribute("ratio", -(2**63))
    extra.record_exception(ValueError("bad"))
    extra.set_error("bad")
    extra.end()
    spans = kept.spans
    assert {s.name for s in spans} >= {"call api", "attempt api", "extra"} and len(spans) > 6
    for span in spans:
        record = span_record(span)
        assert record is not None and record == _client_record(span) == _readable_record(span)
    stored = _client_record(extra)
    assert stored is not None and stored.error and stored.events[0]["name"] == "exception"
    assert stored.attributes["huge"] == str(2**70) and len(stored.attributes["long"]) == 4096
    assert stored.attributes["tags"] == ["a", str(2**64)] and stored.attributes["ratio"] == -(2**63)
