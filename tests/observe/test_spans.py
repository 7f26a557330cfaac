"""ClientSpan: the SpanContext it builds, the ReadableSpan it is, the sampling rule and the hex ids."""

from __future__ import annotations

import json
import random

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    INVALID_SPAN_CONTEXT,
    SpanContext,
    SpanKind,
    StatusCode,
    TraceFlags,
    TraceState,
)

from meshkit.observe.mesh_spans import record_attempt, record_call
from meshkit.observe.propagation import span_hex, trace_hex
from meshkit.observe.spans import SAMPLED, ClientSpan, SpanSink
from meshkit.types import LoadBalancerStrategy, Request, ServiceInstance


class Collect(SpanProcessor):
    def __init__(self) -> None:
        self.ended: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.ended.append(span)


def sink(ratio: float = 1.0) -> tuple[SpanSink, Collect]:
    collect = Collect()
    resource = Resource.create({"service.name": "caller"})
    return SpanSink(collect, resource, InstrumentationScope("meshkit"), ratio), collect


@pytest.mark.parametrize("flags", [0, 1, 2, 3])
@pytest.mark.parametrize("state", [None, TraceState([("vendor", "x")])])
def test_the_span_context_equals_the_public_constructors(flags: int, state: TraceState | None) -> None:
    s, _ = sink()
    remote = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(flags), trace_state=state)
    span = s.start("attempt users", remote)
    built = span.context
    public = SpanContext(span.trace_id, span.span_id, False, TraceFlags(flags), state)
    assert built == public and type(built) is SpanContext
    fields = (built.trace_id, built.span_id, built.is_remote, built.trace_flags, built.trace_state)
    assert fields == (public.trace_id, public.span_id, False, public.trace_flags, public.trace_state)
    assert built.is_valid and built.trace_flags.sampled == bool(flags & SAMPLED)
    assert span.context == built and span.context is not built  # built per read, never kept by the span


def test_an_ended_span_is_the_readable_span_the_processors_get() -> None:
    s, collect = sink()
    call = s.start("call users", None)
    attempt = s.start("attempt users", call)
    attempt.set_attributes({"meshkit.attempt": 0})
    attempt.set_attribute("http.response.status_code", 503)
    attempt.set_error()
    attempt.end()
    call.set_attribute("meshkit.retries", 0)
    call.end()
    assert collect.ended == [attempt, call]
    assert isinstance(attempt, ReadableSpan) and attempt.kind is SpanKind.CLIENT
    assert attempt.parent == call.context and call.parent is None
    assert s.start("call users", INVALID_SPAN_CONTEXT).parent is None  # an invalid parent starts a root
    assert dict(attempt.attributes or {}) == {"meshkit.attempt": 0, "http.response.status_code": 503}
    with pytest.raises(TypeError):
        attempt.attributes["x"] = 1  # type: ignore[index]  # the SDK's read-only view
    assert attempt.status.status_code is StatusCode.ERROR
    assert attempt.resource.attributes["service.name"] == "caller"
    assert attempt.start_time is not None and attempt.end_time is not None
    assert attempt.start_time <= attempt.end_time
    exported = json.loads(attempt.to_json())
    assert exported["name"] == "attempt users"
    assert exported["parent_id"] == f"0x{call.span_id:016x}"
    assert exported["context"]["trace_id"] == f"0x{call.trace_id:032x}"


def test_an_exception_becomes_an_event_and_attributes_stay_per_span() -> None:
    s, _ = sink()
    first, second = s.start("a", None), s.start("b", None)
    first.record_exception(ValueError("boom"))
    first.set_attribute("k", 1)
    assert [e.name for e in first.events] == ["exception"] and second.events == ()
    assert first.events[0].attributes is not None
    assert first.events[0].attributes["exception.type"] == "ValueError"
    assert dict(second.attributes or {}) == {}


def test_unsampled_spans_are_not_exported() -> None:
    s, collect = sink(0.0)
    span = s.start("call users", None)
    assert not span.sampled
    span.end()
    assert collect.ended == []


def test_roots_are_sampled_by_the_ratio_and_children_follow_their_parent() -> None:
    random.seed(7)
    s, _ = sink(0.25)
    roots = [s.start("call", None) for _ in range(4000)]
    kept = sum(r.sampled for r in roots)
    assert 800 < kept < 1200
    for root in roots[:50]:
        assert s.start("attempt", root).sampled == root.sampled
    for bits in (0, 1):
        remote = SpanContext(5, 6, is_remote=True, trace_flags=TraceFlags(bits))
        assert s.start("call", remote).sampled == bool(bits)
        assert s.start("call", remote).trace_id == 5


def test_hex_ids_match_the_usual_formatting() -> None:
    rng = random.Random(3)
    for value in [1, (1 << 64) - 1, *(rng.getrandbits(64) or 1 for _ in range(50))]:
        assert span_hex(value) == f"{value:016x}"
    for value in [1, (1 << 128) - 1, *(rng.getrandbits(128) or 1 for _ in range(50))]:
        assert trace_hex(value) == f"{value:032x}"
    s, _ = sink()
    call = s.start("call", None)
    attempt = s.start("attempt", call)
    assert (attempt.trace_hex, attempt.span_hex) == (f"{call.trace_id:032x}", f"{attempt.span_id:016x}")
    assert attempt.parent_span_hex == f"{call.span_id:016x}" and call.parent_span_hex is None
    remote_child = s.start("call", SpanContext(0xAB, 0xCD, is_remote=True, trace_flags=TraceFlags(1)))
    assert remote_child.parent_span_hex == f"{0xCD:016x}" and remote_child.trace_hex == f"{0xAB:032x}"


def test_a_span_has_a_nonzero_id_of_its_own() -> None:
    s, _ = sink()
    spans = [s.start("x", None) for _ in range(200)]
    assert all(span.span_id > 0 for span in spans)
    assert len({span.span_id for span in spans}) == 200
    assert isinstance(spans[0], ClientSpan)


@pytest.mark.parametrize("failed", [False, True])
def test_fast_getters_read_what_the_sdks_properties_read(failed: bool) -> None:
    s, collect = sink()
    span = s.start("call users", None)
    span.set_attribute("k", "v")
    if failed:
        span.record_exception(RuntimeError("down"))
        span.set_error("RuntimeError: down")
    span.end()
    [ended] = collect.ended
    for field in ("name", "kind", "start_time", "end_time", "status", "resource", "instrumentation_scope"):
        assert getattr(ended, field) is getattr(ReadableSpan, field).fget(ended), field
    assert ended.events == ReadableSpan.events.fget(ended) and isinstance(ended.events, tuple)
    assert ended.links == ReadableSpan.links.fget(ended) == ()
    assert len(ended.events) == int(failed)
    for field in ("parent", "dropped_attributes", "dropped_events", "dropped_links"):
        assert getattr(ended, field) == getattr(ReadableSpan, field).fget(ended), field
    assert ended.get_span_context() == ReadableSpan.get_span_context(ended) == ended.context
    child = s.start("attempt users", span)
    assert child.parent == ReadableSpan.parent.fget(child) == span.context
    assert json.loads(ended.to_json())["name"] == "call users"  # the SDK's own serialiser still reads it


def test_a_call_span_reads_its_fields_as_read_only_attributes_with_what_was_set_merged_in() -> None:
    s, collect = sink()
    span = s.start("call users", None)
    record_call(span, Request("GET", "/x", service="users"))
    assert dict(span.attributes) == {
        "meshkit.service": "users",
        "http.request.method": "GET",
        "url.path": "/x",
    }
    span.retries, span.status_code = 1, 503
    span.set_attribute("meshkit.cancelled", True)
    span.end()
    [ended] = collect.ended
    expected = {"meshkit.service": "users", "http.request.method": "GET", "url.path": "/x",
                "meshkit.retries": 1, "http.response.status_code": 503, "error.type": "503",
                "meshkit.cancelled": True}  # fmt: skip
    assert dict(ended.attributes) == expected
    assert dict(ReadableSpan.attributes.fget(ended) or {}) == expected  # the SDK's read (its `_attributes`)
    assert json.loads(ended.to_json())["attributes"] == expected  # the SDK's serialiser reads them too
    with pytest.raises(TypeError):
        ended.attributes["x"] = 1  # type: ignore[index]
    assert ended.attributes is not ended.attributes  # built per read: a queued span holds no view


def test_an_attempt_span_reads_what_the_layers_decided_as_attributes() -> None:
    s, _ = sink()
    span = s.start("attempt users", s.start("call users", None))
    request = Request("GET", "/x", service="users")
    request.instance = ServiceInstance("users-a", "users", "127.0.0.1", 8080)
    request.context.update({"balancer.reason": LoadBalancerStrategy.P2C_EWMA, "breaker.state": "closed",
                            "outlier.ejected": ["users-b"]})  # fmt: skip
    record_attempt(span, request, 1)
    request.context["outlier.ejected"].append("users-c")  # read at the attempt, not at export
    span.status_code = 200
    assert dict(span.attributes) == {
        "meshkit.service": "users", "meshkit.attempt": 1, "http.request.method": "GET",
        "meshkit.instance.id": "users-a", "server.address": "127.0.0.1", "server.port": 8080,
        "meshkit.balancer.reason": "p2c_ewma", "meshkit.breaker.state": "closed",
        "meshkit.outlier.ejected": ("users-b",), "http.response.status_code": 200,
    }  # fmt: skip
    assert type(span.attributes["meshkit.balancer.reason"]) is str  # a str subclass, written as a plain str
    bare = s.start("attempt users", None)
    record_attempt(bare, Request("GET", "/x", service="users"), 0)
    assert dict(bare.attributes) == {
        "meshkit.service": "users",
        "meshkit.attempt": 0,
        "http.request.method": "GET",
    }
