"""A real OpenTelemetry SDK OTLP/HTTP exporter, and raw HTTP clients, send to the collector.

The server is a small aiohttp app on 127.0.0.1 whose POST /v1/traces is the one-line route
the control plane mounts: `collector.handle_export(body, content_type, content_encoding)`.
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import orjson
import pytest
import requests
from aiohttp import web
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from meshkit.clock import SYSTEM_CLOCK
from meshkit.plane.collector import SpanStore, TraceCollector
from tests.plane.collector.builders import otlp_request, otlp_span, tid

Serve = Callable[[TraceCollector], Awaitable[str]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    runners: list[web.AppRunner] = []

    async def start(collector: TraceCollector) -> str:
        async def export(request: web.Request) -> web.Response:
            reply = await collector.handle_export(
                await request.read(), request.content_type, request.headers.get("Content-Encoding")
            )
            return web.Response(
                status=reply.status, body=reply.body, headers={"Content-Type": reply.content_type}
            )

        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/traces", export)
        runner = web.AppRunner(app, access_log=None, auto_decompress=False)  # the collector inflates, capped
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}/v1/traces"

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def live_collector() -> AsyncIterator[TraceCollector]:
    collector = TraceCollector(SpanStore(None, clock=SYSTEM_CLOCK), max_bytes=64 * 1024)
    yield collector
    await collector.close()


async def emit_with_sdk(endpoint: str, compression: Compression) -> None:
    session = requests.Session()
    session.trust_env = False  # straight to 127.0.0.1 whatever the environment's proxies
    exporter = OTLPSpanExporter(endpoint=endpoint, compression=compression, session=session, timeout=10)
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout"}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("POST /order", kind=SpanKind.SERVER) as root:
        root.set_attribute("order.id", "o-17")
        with tracer.start_as_current_span("charge", kind=SpanKind.CLIENT) as child:
            child.set_attribute("peer.service", "payments")
            child.set_status(Status(StatusCode.ERROR, "card declined"))
    # The SDK's exporter is blocking (requests): flush from a thread while this loop serves.
    await asyncio.to_thread(provider.shutdown)


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip])
async def test_sdk_exporter_spans_are_searchable(
    serve: Serve, live_collector: TraceCollector, compression: Compression
) -> None:
    await emit_with_sdk(await serve(live_collector), compression)
    (found,) = await live_collector.search_traces(service_name="checkout", error_only=True)
    assert (found["root_operation"], found["span_count"], found["error_count"]) == ("POST /order", 2, 1)
    trace = await live_collector.get_trace(found["trace_id"])
    assert trace is not None
    (root,) = trace["spans"]
    assert root["attributes"] == {"order.id": "o-17"} and root["kind"] == "server"
    (charge,) = root["children"]
    assert (charge["kind"], charge["error"], charge["status_message"]) == ("client", True, "card declined")
    (edge,) = await live_collector.get_service_dependencies()
    assert (edge["caller"], edge["callee"], edge["calls"], edge["error_rate"]) == (
        "checkout",
        "payments",
        1,
        1.0,
    )


async def post(url: str, body: bytes, content_type: str, **headers: str) -> tuple[int, bytes, str]:
    async with (
        aiohttp.ClientSession(auto_decompress=False) as session,
        session.post(url, data=body, headers={"Content-Type": content_type, **headers}) as resp,
    ):
        return resp.status, await resp.read(), resp.content_type


async def test_otlp_json_over_http(serve: Serve, live_collector: TraceCollector) -> None:
    url = await serve(live_collector)
    span = {"traceId": tid(5), "spanId": "00000000000000a1", "name": "GET /json", "kind": 2}
    start_ns = int(SYSTEM_CLOCK.time() * 1e9)
    span |= {"startTimeUnixNano": str(start_ns), "endTimeUnixNano": str(start_ns + 250_000_000)}
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": "json-svc"}}]}
    body = orjson.dumps({"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": [span]}]}]})
    assert await post(url, body, "application/json") == (200, b"{}", "application/json")
    (found,) = await live_collector.search_traces(service_name="json-svc")
    assert (found["trace_id"], found["duration_ms"]) == (tid(5), 250.0)


async def test_bad_input_is_never_a_500(serve: Serve, live_collector: TraceCollector) -> None:
    url = await serve(live_collector)
    pb = "application/x-protobuf"
    big = otlp_request({"s": [otlp_span(1, 1, attributes={"blob": "x" * 4000}) for _ in range(30)]})
    status, body, _ = await post(url, big.SerializeToString(), pb)
    assert status == 413 and b"limit" in body
    bomb = gzip.compress(b"\x0a" * 10_000_000)
    assert (await post(url, bomb, pb, **{"Content-Encoding": "gzip"}))[0] == 413
    assert (await post(url, b"\xff\x00garbage\x13", pb))[0] == 400
    assert (await post(url, b"{]", "application/json"))[0] == 400
    assert (await post(url, b"hello", "text/plain"))[0] == 415
    now = SYSTEM_CLOCK.time()
    half_bad = otlp_request({"s": [otlp_span(1, 1, start=now), otlp_span(1, 2, start=now, duration_ms=-5)]})
    status, body, content_type = await post(url, half_bad.SerializeToString(), pb)
    assert (status, content_type) == (200, pb) and b"endTimeUnixNano" in body
    assert (live_collector.refused_exports, live_collector.rejected_spans, live_collector.accepted_spans) == (
        5,
        1,
        1,
    )


async def test_span_flood_beyond_retention_drops_oldest(serve: Serve) -> None:
    collector = TraceCollector(SpanStore(None, max_spans=500, clock=SYSTEM_CLOCK))
    url = await serve(collector)
    now = SYSTEM_CLOCK.time()
    for batch in range(10):
        spans = [otlp_span(batch * 100 + i + 1, 1, start=now + batch + i / 1000) for i in range(100)]
        body = otlp_request({"flood": spans}).SerializeToString()
        assert (await post(url, body, "application/x-protobuf"))[0] == 200
    assert collector.store.span_count == 500 and collector.dropped_spans == 500
    newest = await collector.search_traces(service_name="flood", limit=1000)
    assert len(newest) == 500 and min(int(t["trace_id"], 16) for t in newest) == 501
    await collector.close()
