"""The wire encoder writes the SDK encoder's request; its exporter posts it to real servers on 127.0.0.1.

Every batch is encoded both ways: `otlp_wire.encode_spans(spans)` and the OpenTelemetry
exporter's `trace_encoder.encode_spans(spans).SerializePartialToString()`; the parsed
messages must be equal, and (as the module promises) so must the bytes.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import logging
import math
import random
import textwrap
from collections.abc import Sequence
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
    set_span_in_context,
)

from meshkit.clock import SYSTEM_CLOCK
from meshkit.observe.batch import BatchingSpanProcessor
from meshkit.observe.otlp_wire import encode_spans
from meshkit.observe.tracing import Tracer
from meshkit.observe.wire_exporter import WireOTLPSpanExporter
from meshkit.plane.collector import SpanStore, TraceCollector
from tests.conftest import StartUpstream

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
EVERY_TYPE: dict[str, Any] = {
    "str": "users",
    "empty": "",
    "unicode": "naïve ✓ 日本 🚀",
    "true": True,
    "false": False,
    "zero": 0,
    "negative": -1,
    "int64.min": INT64_MIN,
    "int64.max": INT64_MAX,
    "float": 3.25,
    "float.negative.zero": -0.0,
    "float.inf": math.inf,
    "bytes": b"\x00\xff",
    "strs": ["a", "", "ü"],
    "bools": (True, False),
    "ints": [0, -5, INT64_MAX],
    "floats": [1.5, -2.0],
    "empty.list": [],
}


def sdk_bytes(spans: Sequence[ReadableSpan]) -> bytes:
    serialized: bytes = sdk_encode_spans(spans).SerializePartialToString()
    return serialized


def assert_same_request(spans: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
    wire, sdk = encode_spans(spans), sdk_bytes(spans)
    message: ExportTraceServiceRequest = ExportTraceServiceRequest.FromString(wire)
    assert message == ExportTraceServiceRequest.FromString(sdk)
    assert wire == sdk
    return message


def finished_sdk_spans(provider: TracerProvider, make: Any) -> tuple[ReadableSpan, ...]:
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    make(provider)
    return memory.get_finished_spans()


def remote_parent(is_remote: bool = True) -> SpanContext:
    state = TraceState([("vendor", "x1"), ("other", "y")])
    return SpanContext(
        0xABC << 64 | 0xDEF, 0x1234, is_remote=is_remote, trace_flags=TraceFlags(1), trace_state=state
    )


def test_sdk_spans_with_events_links_statuses_and_every_attribute_type() -> None:
    def make(provider: TracerProvider) -> None:
        tracer = provider.get_tracer(
            "orders.lib", "1.2.3", schema_url="https://opentelemetry.io/schemas/1.21.0"
        )
        link = Link(remote_parent(), {"link.kind": "follows", "n": [1, 2]})
        root = tracer.start_span("POST /order", kind=SpanKind.SERVER, attributes=EVERY_TYPE, links=[link])
        root.add_event("queued", {"depth": 3, "names": ["a", "b"]}, timestamp=1_700_000_000_000_000_001)
        root.add_event("no attributes")
        root.set_status(Status(StatusCode.ERROR, "card declined: ünïcode"))
        for kind in (SpanKind.INTERNAL, SpanKind.CLIENT, SpanKind.PRODUCER, SpanKind.CONSUMER):
            with tracer.start_as_current_span(
                f"child {kind.name}", context=set_span_in_context(root), kind=kind
            ) as c:
                c.set_status(Status(StatusCode.OK))
        remote_child = tracer.start_span(
            "from remote", context=set_span_in_context(NonRecordingSpan(remote_parent()))
        )
        remote_child.end()
        root.end()

    spans = finished_sdk_spans(TracerProvider(resource=Resource.create({"service.name": "orders"})), make)
    assert len(spans) == 6
    message = assert_same_request(spans)
    written = message.resource_spans[0].scope_spans[0].spans
    assert {s.name: s.flags for s in written}["from remote"] == 0x300  # has-is-remote + is-remote
    assert {s.name: s.kind for s in written}["POST /order"] == 2  # SPAN_KIND_SERVER = SpanKind.SERVER + 1
    root = next(s for s in written if s.name == "POST /order")
    values = {a.key: a.value for a in root.attributes}
    assert values["negative"].int_value == -1 and values["int64.min"].int_value == INT64_MIN
    assert [v.string_value for v in values["strs"].array_value.values] == ["a", "", "ü"]
    assert (root.status.code, root.status.message) == (2, "card declined: ünïcode")


def test_dropped_counts_and_limits_are_written_as_the_sdk_does() -> None:
    limits = SpanLimits(max_span_attributes=2, max_events=1, max_links=1, max_event_attributes=1)

    def make(provider: TracerProvider) -> None:
        tracer = provider.get_tracer("limits")
        links = [Link(remote_parent(), {"a": 1}), Link(remote_parent(False))]
        with tracer.start_as_current_span("bounded", attributes={"a": 1, "b": 2, "c": 3}, links=links) as s:
            s.add_event("first")
            s.add_event("second", {"x": 1, "y": 2})  # the newest event is kept, and one attribute of it

    spans = finished_sdk_spans(TracerProvider(span_limits=limits), make)
    written = assert_same_request(spans).resource_spans[0].scope_spans[0].spans[0]
    assert (written.dropped_attributes_count, written.dropped_events_count, written.dropped_links_count) == (
        1,
        1,
        1,
    )
    assert written.events[0].dropped_attributes_count == 1


def test_readable_spans_with_unset_fields_and_no_scope() -> None:
    context = SpanContext(7, 9, is_remote=False)
    bare = ReadableSpan("", context=context, start_time=None, end_time=None, instrumentation_scope=None)
    only_start = ReadableSpan("s", context=context, parent=remote_parent(False), start_time=5, status=None)  # type: ignore[arg-type]
    scope = InstrumentationScope("", None, None, {"scope.attr": "v"})
    only_end = ReadableSpan(
        "e", context=context, end_time=6, instrumentation_scope=scope, events=[Event("", None, 0)]
    )
    assert_same_request([bare, only_start, only_end])


def test_client_spans_root_child_remote_parent_and_errors() -> None:
    memory = InMemorySpanExporter()
    tracer = Tracer("users", processors=[SimpleSpanProcessor(memory)])
    sink = tracer.sink
    call = sink.start("call users", None)
    call.set_attributes({"meshkit.service": "users", "http.request.method": "GET", "url.path": "/x"})
    call.set_attribute("meshkit.retries", 1)
    attempt = sink.start("attempt users", call)
    attempt.set_attributes({"meshkit.attempt": 0, "server.port": 8080, "meshkit.instance.id": "users-1"})
    attempt.record_exception(ConnectionResetError("reset by peer"))
    attempt.set_error("connection reset")
    attempt.end()
    retry = sink.start("attempt users", call)
    retry.set_attribute("http.response.status_code", 200)
    retry.end()
    call.end()
    from_remote = sink.start("call stock", remote_parent())
    from_remote.end()

    spans = memory.get_finished_spans()
    assert len(spans) == 4
    message = assert_same_request(spans)
    written = {s.name + str(i): s for i, s in enumerate(message.resource_spans[0].scope_spans[0].spans)}
    failed = written["attempt users0"]
    assert failed.parent_span_id == call.span_id.to_bytes(8, "big")
    assert failed.events[0].name == "exception" and failed.status.message == "connection reset"
    assert written["call stock3"].trace_state == "vendor=x1,other=y"
    assert written["call stock3"].flags == 0x300


def test_several_resources_and_scopes_in_one_batch_are_grouped_as_the_sdk_groups_them() -> None:
    def make(name: str) -> Any:
        def spans(provider: TracerProvider) -> None:
            for scope in ("alpha", "beta"):
                tracer = provider.get_tracer(scope, "1.0")
                for k in range(3):
                    tracer.start_span(f"{name} {scope} {k}").end()

        return spans

    first = finished_sdk_spans(TracerProvider(resource=Resource({"service.name": "a"})), make("a"))
    second = finished_sdk_spans(
        TracerProvider(resource=Resource({"service.name": "b"}, "https://schema/b")), make("b")
    )
    # An equal resource in another object: one ResourceSpans with the first, as the SDK groups by equality.
    twin = finished_sdk_spans(TracerProvider(resource=Resource({"service.name": "a"})), make("twin"))
    tracer = Tracer("c", processors=[SimpleSpanProcessor(memory := InMemorySpanExporter())])
    for _ in range(3):
        tracer.sink.start("call c", None).end()
    client = list(memory.get_finished_spans())
    batch = [*first, *second, *twin, *client]
    random.Random(7).shuffle(batch)
    message = assert_same_request(batch)
    assert len(message.resource_spans) == 3
    assert [len(r.scope_spans) for r in message.resource_spans].count(2) == 2


def test_equal_values_of_other_classes_are_not_taken_for_one_another() -> None:
    """True == 1 == 1.0 and 0.0 == -0.0: a field reused within a batch must be of the same class."""
    values: list[Any] = [1, True, 1.0, 0, False, 0.0, -0.0, "1", b"1", [1], [True], (1.0,), None]
    context = SpanContext(1, 2, False)
    spans = [ReadableSpan("s", context=context, attributes={"k": v, "k2": v}) for v in values * 2]
    assert_same_request(spans)


def test_an_empty_batch_is_an_empty_request() -> None:
    assert encode_spans([]) == sdk_bytes([]) == b""


def test_attributes_the_sdk_cannot_encode_are_left_out_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    attributes: dict[str, Any] = {
        "ok": "kept",
        "too.big": INT64_MAX + 1,
        "too.small": [INT64_MIN - 1],
        "object": object(),
        "lone\udc80key": "v",
        "lone.value": "a\ud800b",
        "nested": {"k": [1, "two", None]},
    }
    spans = [ReadableSpan("s", context=SpanContext(1, 2, False), attributes=attributes) for _ in range(2)]
    with caplog.at_level(logging.ERROR, logger="meshkit.observe.otlp_wire"):
        message = assert_same_request(spans)
    kept = [a.key for a in message.resource_spans[0].scope_spans[0].spans[0].attributes]
    assert kept == ["ok", "nested"]
    assert "Failed to encode key too.big" in caplog.text


def test_a_lone_surrogate_in_a_name_is_replaced_where_the_sdk_fails_the_batch() -> None:
    span = ReadableSpan("bad \udc80 name", context=SpanContext(1, 2, False), events=[Event("ev\ud800", {})])
    with pytest.raises(UnicodeEncodeError):
        sdk_bytes([span])
    written = (
        ExportTraceServiceRequest.FromString(encode_spans([span])).resource_spans[0].scope_spans[0].spans[0]
    )
    assert (written.name, written.events[0].name) == ("bad ? name", "ev?")


any_text = st.text(st.characters(blacklist_categories=()), max_size=12)  # lone surrogates too
primitives = st.one_of(
    any_text,
    st.booleans(),
    st.integers(min_value=-(1 << 65), max_value=1 << 65),
    st.floats(allow_nan=True),
    st.binary(max_size=8),
    st.none(),
)
values = st.recursive(
    primitives,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)
homogeneous = st.one_of(
    st.lists(st.text(max_size=6), max_size=4),
    st.lists(st.integers(min_value=INT64_MIN, max_value=INT64_MAX), max_size=4),
    st.lists(st.floats(allow_nan=False), max_size=4),
    st.lists(st.booleans(), max_size=4),
)
attribute_dicts = st.dictionaries(any_text, st.one_of(values, homogeneous), max_size=8)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(span_attributes=st.lists(attribute_dicts, min_size=1, max_size=3), event_attributes=attribute_dicts)
def test_random_attributes_encode_as_the_sdk_encodes_them(
    span_attributes: list[dict[str, Any]], event_attributes: dict[str, Any]
) -> None:
    logging.disable(logging.CRITICAL)  # unencodable values are expected here; each is logged
    try:
        events = [Event("e", event_attributes, 3)]
        spans = [
            ReadableSpan("s", context=SpanContext(1, k + 1, False), attributes=attrs, events=events)
            for k, attrs in enumerate(
                span_attributes * 2
            )  # each dict twice: the second from the batch's fields
        ]
        assert encode_spans(spans) == sdk_bytes(spans)  # bytes, since a NaN is never equal to itself
    finally:
        logging.disable(logging.NOTSET)


def test_the_exporter_is_the_base_export_with_only_the_encoder_changed() -> None:
    def body(function: Any) -> list[ast.stmt]:
        [definition] = ast.parse(textwrap.dedent(inspect.getsource(function))).body
        assert isinstance(definition, ast.FunctionDef)
        return [
            s for s in definition.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))
        ]

    base = ast.dump(ast.Module(body(OTLPSpanExporter.export), []))
    ours = ast.dump(ast.Module(body(WireOTLPSpanExporter.export), []))
    sdk_call = "encode_spans(spans).SerializePartialToString()"
    assert sdk_call in inspect.getsource(OTLPSpanExporter.export)
    wire_call = ast.dump(ast.parse("encode_spans(spans)", mode="eval").body)
    assert base.replace(ast.dump(ast.parse(sdk_call, mode="eval").body), wire_call) == ours


async def test_the_exporter_posts_the_spans_to_an_otlp_endpoint(upstreams: StartUpstream) -> None:
    received: list[bytes] = []
    answers = [web.Response(status=503, headers={"Retry-After": "0"})]  # first post: retried at once

    async def collector(request: web.Request) -> web.StreamResponse:
        received.append(await request.read())
        if answers:
            return answers.pop()
        body = ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=body, content_type="application/x-protobuf")

    up = await upstreams("collector", collector)
    exporter = WireOTLPSpanExporter(endpoint=f"http://127.0.0.1:{up.port}/v1/traces", timeout=10)
    memory = InMemorySpanExporter()
    tracer = Tracer("orders", processors=[SimpleSpanProcessor(memory)])
    call = tracer.sink.start("call stock", None)
    call.set_attributes({"meshkit.service": "stock", "server.port": 8080})
    tracer.sink.start("attempt stock", call).end()
    call.end()
    spans = memory.get_finished_spans()

    assert await asyncio.to_thread(exporter.export, spans) is SpanExportResult.SUCCESS
    assert len(received) == 2 and received[0] == received[1]
    assert ExportTraceServiceRequest.FromString(received[1]) == ExportTraceServiceRequest.FromString(
        sdk_bytes(spans)
    )

    small = WireOTLPSpanExporter(endpoint=f"http://127.0.0.1:{up.port}/v1/traces", max_request_size=64)
    assert await asyncio.to_thread(small.export, spans) is SpanExportResult.FAILURE  # too large: not sent
    exporter.shutdown()  # type: ignore[no-untyped-call]
    assert exporter.export(spans) is SpanExportResult.FAILURE
    assert len(received) == 2


async def test_client_spans_reach_meshkits_collector_searchable(upstreams: StartUpstream) -> None:
    collector = TraceCollector(SpanStore(None, clock=SYSTEM_CLOCK))

    async def export(request: web.Request) -> web.StreamResponse:
        reply = await collector.handle_export(await request.read(), request.content_type)
        return web.Response(
            status=reply.status, body=reply.body, headers={"Content-Type": reply.content_type}
        )

    up = await upstreams("collector", export)
    exporter = WireOTLPSpanExporter(endpoint=f"http://127.0.0.1:{up.port}/v1/traces")
    tracer = Tracer("orders", processors=[BatchingSpanProcessor(exporter)])
    call = tracer.sink.start("call payments", None)
    call.set_attribute("meshkit.service", "payments")
    attempt = tracer.sink.start("attempt payments", call)
    attempt.set_error("declined")
    attempt.end()
    call.end()
    try:
        assert await asyncio.to_thread(tracer.force_flush, 10_000)
        (found,) = await collector.search_traces(service_name="orders")
        assert (found["trace_id"], found["root_operation"]) == (call.trace_hex, "call payments")
        assert (found["span_count"], found["error_count"]) == (2, 1)
    finally:
        await asyncio.to_thread(tracer.shutdown)
        await collector.close()
