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

from meshkit.observe.propagation import span_hex, trace_hex
from meshkit.observe.spans import SAMPLED, ClientSpan, SpanSink


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
    assert span.context is built  # built once


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
    assert ended.get_span_context() is ReadableSpan.get_span_context(ended) is ended.context
    child = s.start("attempt users", span)
    assert child.parent is ReadableSpan.parent.fget(child) is span.context
    assert json.loads(ended.to_json())["name"] == "call users"  # the SDK's own serialiser still reads it


def test_attributes_given_at_start_are_kept_by_a_sampled_span_as_a_read_only_live_view() -> None:
    s, collect = sink()
    given: dict[str, object] = {"meshkit.service": "users"}
    span = s.start("call users", None, given)
    given["http.response.status_code"] = 200  # written after start, as the layers do
    span.end()
    [ended] = collect.ended
    assert dict(ended.attributes) == {"meshkit.service": "users", "http.response.status_code": 200}
    assert dict(ended.attributes) == dict(ReadableSpan.attributes.fget(ended) or {})  # the SDK's read
    with pytest.raises(TypeError):
        ended.attributes["x"] = 1  # type: ignore[index]
    unsampled, _ = sink(0.0)
    dropped = unsampled.start("call users", None, {"meshkit.service": "users"})
    assert not dropped.sampled and dict(dropped.attributes) == {}  # an unsampled span keeps nothing
