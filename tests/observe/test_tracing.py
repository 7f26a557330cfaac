"""Call and attempt spans through a small stack over MockTransport, read back from the SDK."""

from __future__ import annotations

import asyncio
import functools
import math
from collections.abc import Callable

import pytest
from multidict import CIMultiDict
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext, SpanKind, StatusCode, TraceFlags

from meshkit.errors import ConnectError
from meshkit.observe.propagation import FORMATS, MeshPropagator
from meshkit.observe.tracing import (
    BALANCER_REASON_KEY,
    BREAKER_STATE_KEY,
    EJECTED_KEY,
    TRACE_ID_KEY,
    AttemptSpanLayer,
    CallSpanLayer,
    Tracer,
)
from meshkit.service import Service
from meshkit.stack import Stack
from meshkit.transport.mock import MockHandler, MockTransport
from meshkit.types import Request, Response, ServiceInstance

INSTANCES = [
    ServiceInstance("users-a", "users", "127.0.0.1", 8001),
    ServiceInstance("users-b", "users", "127.0.0.2", 8002),
]


class PickLayer:
    """Stands in for the balancer: picks the next instance and says why, as a balancer would."""

    def __init__(self, inner: Service) -> None:
        self.inner = inner
        self.picks = 0

    async def __call__(self, request: Request) -> Response:
        request.instance = INSTANCES[self.picks % len(INSTANCES)]
        self.picks += 1
        request.context[BALANCER_REASON_KEY] = "round_robin"
        request.context[BREAKER_STATE_KEY] = "closed"
        request.context[EJECTED_KEY] = ["users-c"]
        return await self.inner(request)


class RetryOn5xx:
    """Stands in for the retry layer: one more try after a 5xx."""

    def __init__(self, inner: Service) -> None:
        self.inner = inner

    async def __call__(self, request: Request) -> Response:
        response = await self.inner(request)
        if response.status >= 500:
            request.attempt += 1
            response = await self.inner(request)
        return response


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def make_tracer(exporter: InMemorySpanExporter) -> Callable[..., Tracer]:
    def make(sample_ratio: float = 1.0, propagator: MeshPropagator | None = None) -> Tracer:
        processors = [SimpleSpanProcessor(exporter)]
        if propagator is None:
            return Tracer("caller", sample_ratio=sample_ratio, processors=processors)
        return Tracer("caller", sample_ratio=sample_ratio, processors=processors, propagator=propagator)

    return make


def build(tracer: Tracer, handler: MockHandler, *, retry: bool = False, extract: bool = False) -> Service:
    stack = Stack()
    stack.push("attempt-span", functools.partial(AttemptSpanLayer, tracer=tracer))
    stack.push("balancer", PickLayer)
    if retry:
        stack.push("retry", RetryOn5xx)
    stack.push("call-span", functools.partial(CallSpanLayer, tracer=tracer, extract_from_headers=extract))
    return stack.build(MockTransport(handler))


def by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, list[ReadableSpan]]:
    out: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        out.setdefault(span.name, []).append(span)
    return out


async def test_one_call_span_and_one_attempt_span_linked_as_parent_and_child(
    make_tracer: Callable[..., Tracer], exporter: InMemorySpanExporter
) -> None:
    seen: list[CIMultiDict[str]] = []

    def handler(request: Request) -> Response:
        seen.append(request.headers)
        return Response(200, body=b"ok")

    original: CIMultiDict[str] = CIMultiDict({"Accept": "text/plain"})
    request = Request("GET", "/users/7", headers=original, service="users")
    response = await build(make_tracer(propagator=MeshPropagator(inject=FORMATS)), handler)(request)
    assert response.status == 200

    spans = by_name(exporter.get_finished_spans())
    [call], [attempt] = spans["call users"], spans["attempt users"]
    assert call.kind is SpanKind.CLIENT and attempt.kind is SpanKind.CLIENT
    assert call.parent is None
    assert attempt.parent is not None and attempt.parent.span_id == call.context.span_id
    assert attempt.context.trace_id == call.context.trace_id
    assert request.context[TRACE_ID_KEY] == f"{call.context.trace_id:032x}"
    assert call.resource.attributes["service.name"] == "caller"

    assert dict(call.attributes or {}) == {
        "meshkit.service": "users",
        "http.request.method": "GET",
        "url.path": "/users/7",
        "http.response.status_code": 200,
        "meshkit.retries": 0,
    }
    attrs = dict(attempt.attributes or {})
    assert attrs["meshkit.instance.id"] == "users-a"
    assert (attrs["server.address"], attrs["server.port"], attrs["meshkit.attempt"]) == ("127.0.0.1", 8001, 0)
    assert attrs["meshkit.balancer.reason"] == "round_robin"
    assert attrs["meshkit.breaker.state"] == "closed"
    assert attrs["meshkit.outlier.ejected"] == ("users-c",)
    assert call.status.status_code is StatusCode.UNSET

    sent = seen[0]
    tid, attempt_sid = f"{call.context.trace_id:032x}", f"{attempt.context.span_id:016x}"
    assert sent["traceparent"].split("-")[1:3] == [tid, attempt_sid]
    assert sent["X-Trace-Id"] == tid and sent["X-Span-Id"] == attempt_sid
    assert sent["X-Parent-Span-Id"] == sent["X-B3-ParentSpanId"] == f"{call.context.span_id:016x}"
    assert sent["Accept"] == "text/plain"
    assert "traceparent" not in original and request.headers is original  # the caller's headers untouched


async def test_retries_make_one_attempt_span_each_under_one_call_span(
    make_tracer: Callable[..., Tracer], exporter: InMemorySpanExporter
) -> None:
    statuses = iter([503, 200])
    sent_span_ids: list[str] = []

    def handler(request: Request) -> Response:
        sent_span_ids.append(request.headers["traceparent"].split("-")[2])  # W3C: the default out
        return Response(next(statuses))

    response = await build(make_tracer(), handler, retry=True)(Request(service="users"))
    assert response.status == 200

    spans = by_name(exporter.get_finished_spans())
    [call], attempts = spans["call users"], spans["attempt users"]
    assert [a.attributes["meshkit.attempt"] for a in attempts if a.attributes] == [0, 1]
    assert [a.attributes["meshkit.instance.id"] for a in attempts if a.attributes] == ["users-a", "users-b"]
    assert {a.parent.span_id for a in attempts if a.parent} == {call.context.span_id}
    assert [a.status.status_code for a in attempts] == [StatusCode.ERROR, StatusCode.UNSET]
    assert sent_span_ids == [f"{a.context.span_id:016x}" for a in attempts]
    assert call.attributes and call.attributes["meshkit.retries"] == 1
    assert call.status.status_code is StatusCode.UNSET


async def test_a_final_5xx_marks_the_call_an_error(
    make_tracer: Callable[..., Tracer], exporter: InMemorySpanExporter
) -> None:
    response = await build(make_tracer(), lambda r: Response(502))(Request(service="users"))
    assert response.status == 502
    for span in exporter.get_finished_spans():
        assert span.status.status_code is StatusCode.ERROR
        assert span.attributes and span.attributes["http.response.status_code"] == 502
        assert span.attributes["error.type"] == "502"


async def test_a_4xx_is_not_an_error(
    make_tracer: Callable[..., Tracer], exporter: InMemorySpanExporter
) -> None:
    await build(make_tracer(), lambda r: Response(404))(Request(service="users"))
    assert {s.status.status_code for s in exporter.get_finished_spans()} == {StatusCode.UNSET}


async def test_an_exception_is_recorded_on_both_spans(
    make_tracer: Callable[..., Tracer], exporter: InMemorySpanExporter
) -> None:
    def handler(request: Request) -> Response:
        raise ConnectError("connection refused", "users-a")

    with pytest.raises(ConnectError):
        await build(make_tracer(), handler)(Request(service="users"))
    spans = exporter.get_finished_spans()
    assert len(spans) == 2
    for span in spans:
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description == "ConnectError: connection refused"
        assert span.attributes and span.attributes["error.type"] == "ConnectError"
        [event] = span.events
        assert event.name == "exception" and event.attributes
        assert event.attributes["exception.type"] == "meshkit.errors.ConnectError"


async def test_cancellation_is_noted_not_an_error(
    make_tracer: Callable[..., Tracer], exporter: InMemorySpanExporter
) -> None:
    started = asyncio.Event()

    async def handler(request: Request) -> Response:
        started.set()
        await asyncio.sleep(3600)
        return Response(200)

    task = asyncio.create_task(build(make_tracer(), handler)(Request(service="users")))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for span in exporter.get_finished_spans():
        assert span.status.status_code is StatusCode.UNSET
        assert span.attributes and span.attributes["meshkit.cancelled"] is True


async def test_sampling_ratio_zero_records_nothing_but_still_propagates(
    make_tracer: Callable[..., Tracer], exporter: InMemorySpanExporter
) -> None:
    seen: list[CIMultiDict[str]] = []

    def handler(request: Request) -> Response:
        seen.append(request.headers)
        return Response(200)

    request = Request(service="users")
    await build(make_tracer(0.0, MeshPropagator(inject=FORMATS)), handler)(request)
    assert exporter.get_finished_spans() == ()
    sent = seen[0]
    _, tid, sid, flags = sent["traceparent"].split("-")
    assert tid == request.context[TRACE_ID_KEY] and int(tid, 16) != 0 and int(sid, 16) != 0
    assert int(flags, 16) & 1 == 0 and sent["X-B3-Sampled"] == "0"


async def test_the_roots_decision_wins_over_the_local_ratio(
    make_tracer: Callable[..., Tracer], exporter: InMemorySpanExporter
) -> None:
    def remote(flags: int) -> SpanContext:
        return SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(flags))

    service = build(make_tracer(0.0), lambda r: Response(200))
    token = otel_context.attach(trace.set_span_in_context(trace.NonRecordingSpan(remote(0x03))))
    try:
        request = Request(service="users")
        await service(request)  # a sampled parent keeps the trace although this service samples 0%
    finally:
        otel_context.detach(token)
    spans = by_name(exporter.get_finished_spans())
    [call] = spans["call users"]
    assert call.context.trace_id == 0xABC and call.parent and call.parent.span_id == 0xDEF
    assert request.context[TRACE_ID_KEY] == f"{0xABC:032x}"

    exporter.clear()
    service = build(make_tracer(1.0), lambda r: Response(200))
    token = otel_context.attach(trace.set_span_in_context(trace.NonRecordingSpan(remote(0x02))))
    try:
        await service(Request(service="users"))  # an unsampled parent drops it although this samples 100%
    finally:
        otel_context.detach(token)
    assert exporter.get_finished_spans() == ()


async def test_ratio_is_applied_at_the_root(
    make_tracer: Callable[..., Tracer], exporter: InMemorySpanExporter
) -> None:
    service = build(make_tracer(0.5), lambda r: Response(200))
    for _ in range(400):
        await service(Request(service="users"))
    calls = len(by_name(exporter.get_finished_spans()).get("call users", []))
    assert 120 < calls < 280  # binomial(400, 0.5): far outside 6 sigma otherwise
    assert len(exporter.get_finished_spans()) == 2 * calls  # attempts follow their call


async def test_call_can_continue_a_trace_sent_in_the_request_headers(
    make_tracer: Callable[..., Tracer], exporter: InMemorySpanExporter
) -> None:
    tid, sid = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    headers = {"traceparent": f"00-{tid}-{sid}-01"}
    service = build(make_tracer(), lambda r: Response(200), extract=True)
    await service(Request(service="users", headers=CIMultiDict(headers)))
    [call] = by_name(exporter.get_finished_spans())["call users"]
    assert f"{call.context.trace_id:032x}" == tid
    assert call.parent and f"{call.parent.span_id:016x}" == sid


async def test_exporters_are_batched_and_flushed(exporter: InMemorySpanExporter) -> None:
    tracer = Tracer("caller", exporters=[exporter])
    await build(tracer, lambda r: Response(200))(Request(service="users"))
    assert tracer.force_flush()
    assert len(exporter.get_finished_spans()) == 2
    tracer.shutdown()


@pytest.mark.parametrize("ratio", [-0.1, 1.5, math.nan, True, "1"])
def test_sample_ratio_is_validated(ratio: object) -> None:
    with pytest.raises(ValueError, match=r"^sample_ratio: must be a number in \[0, 1\]"):
        Tracer("caller", sample_ratio=ratio)  # type: ignore[arg-type]


def test_service_name_is_validated() -> None:
    with pytest.raises(ValueError, match=r"^service_name:"):
        Tracer("Not A Name")


def test_facade_inject_and_extract_round_trip(make_tracer: Callable[..., Tracer]) -> None:
    tracer = make_tracer()
    span = tracer.start_span("work")
    headers: CIMultiDict[str] = CIMultiDict()
    tracer.inject(headers, trace.set_span_in_context(span))
    span.end()
    found = trace.get_current_span(tracer.extract(headers)).get_span_context()
    ours = span.get_span_context()
    assert (found.trace_id, found.span_id) == (ours.trace_id, ours.span_id)
    assert isinstance(tracer.propagator, MeshPropagator)


async def test_the_default_stack_records_its_decisions_on_each_attempt(
    make_tracer: Callable[..., Tracer], exporter: InMemorySpanExporter
) -> None:
    """Balancer reason, breaker state and ejections come from the real layers, not from the test."""
    from meshkit.balance.layer import REASON_KEY
    from meshkit.client import MeshClient
    from meshkit.observe import tracing
    from meshkit.resilience.breaker import BreakerPolicy
    from meshkit.resilience.breaker.layer import STATE_KEY
    from meshkit.resilience.outlier import EJECTED_KEY, OutlierPolicy
    from meshkit.resilience.retry import RetryPolicy
    from meshkit.types import ServiceState

    assert (tracing.BALANCER_REASON_KEY, tracing.BREAKER_STATE_KEY, tracing.EJECTED_KEY) == (
        REASON_KEY,
        STATE_KEY,
        EJECTED_KEY,
    )
    a = ServiceInstance("users-a", "users", "127.0.0.1", 8001)
    b = ServiceInstance("users-b", "users", "127.0.0.1", 8002, state=ServiceState.DEGRADED)

    def handler(request: Request) -> Response:
        return Response(503 if request.instance is a else 200)

    client = MeshClient.static(
        {"users": [("127.0.0.1", 8001)]},
        strategy="round_robin",
        transport=MockTransport(handler),
        tracer=make_tracer(),
        retry=RetryPolicy(max_attempts=2, base_delay=0.0),
        breaker=BreakerPolicy(failure_threshold=1),
        outlier=OutlierPolicy(consecutive_failures=1, max_ejection_percent=100, panic_threshold=0),
    )
    client.resolver.set("users", [a, b])  # type: ignore[attr-defined]
    assert (await client.call(Request(service="users"))).status == 200  # a fails, the retry goes to b
    assert (await client.call(Request(service="users"))).status == 200  # a is out: b alone is eligible
    attempts = [dict(s.attributes or {}) for s in exporter.get_finished_spans() if s.name == "attempt users"]
    first, retry, later = attempts
    assert first["meshkit.instance.id"] == "users-a"
    assert first["meshkit.balancer.reason"] == "round_robin, 1 of 2 eligible"  # b is degraded: not preferred
    assert first["meshkit.breaker.state"] == "closed" and first["meshkit.outlier.ejected"] == 0
    assert retry["meshkit.instance.id"] == "users-b"
    assert retry["meshkit.balancer.reason"] == "round_robin, 1 of 2 eligible, degraded fallback"
    assert later["meshkit.instance.id"] == "users-b"
    assert later["meshkit.outlier.ejected"] == ("users-a",)
    assert later["meshkit.balancer.reason"] == "round_robin, 1 of 2 eligible, degraded fallback"
    client.resolver.set("users", [a, ServiceInstance("users-c", "users", "127.0.0.1", 8003)])  # type: ignore[attr-defined]
    exporter.clear()
    await client.call(Request(service="users"))  # a is still out, c is healthy
    [plain] = [dict(s.attributes or {}) for s in exporter.get_finished_spans() if s.name == "attempt users"]
    assert plain["meshkit.instance.id"] == "users-c"
    assert plain["meshkit.balancer.reason"] == "round_robin, 1 of 2 eligible"
    client.resolver.set("users", [ServiceInstance("users-c", "users", "127.0.0.1", 8003)])  # type: ignore[attr-defined]
    exporter.clear()
    await client.call(Request(service="users"))
    [only] = [dict(s.attributes or {}) for s in exporter.get_finished_spans() if s.name == "attempt users"]
    assert only["meshkit.balancer.reason"] == "round_robin" and only["meshkit.outlier.ejected"] == 0
