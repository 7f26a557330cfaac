"""MeshPropagator: each format round-trips, priority, size caps, flag bit masks, fuzzed garbage."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy
from opentelemetry import baggage, trace
from opentelemetry.context import Context, attach, detach
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from meshkit.observe.propagation import (
    DEFAULT_INJECT,
    FORMATS,
    MAX_TRACE_HEADER,
    MeshPropagator,
    parse_flags,
)

TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
SPAN_ID = 0x00F067AA0BA902B7
TID, SID = f"{TRACE_ID:032x}", f"{SPAN_ID:016x}"
OTHER_TID = "0af7651916cd43dd8448eb211c80319c"


def context_with(sampled: bool = True, state: TraceState | None = None) -> Context:
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    sc = SpanContext(TRACE_ID, SPAN_ID, is_remote=False, trace_flags=flags, trace_state=state)
    return trace.set_span_in_context(NonRecordingSpan(sc))


def extracted(
    headers: dict[str, str] | CIMultiDict[str], propagator: MeshPropagator | None = None
) -> SpanContext:
    carrier = headers if isinstance(headers, CIMultiDict) else CIMultiDict(headers)
    return trace.get_current_span((propagator or MeshPropagator()).extract(carrier)).get_span_context()


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("sampled", [True, False])
def test_each_format_round_trips(fmt: str, sampled: bool) -> None:
    propagator = MeshPropagator(inject=[fmt], baggage=False)
    headers: CIMultiDict[str] = CIMultiDict()
    propagator.inject(headers, context_with(sampled))
    assert headers, f"{fmt} wrote no header"
    assert set(k.lower() for k in headers) <= {f.lower() for f in propagator.fields}
    sc = extracted(headers)
    assert (sc.trace_id, sc.span_id, sc.trace_flags.sampled) == (TRACE_ID, SPAN_ID, sampled)
    assert sc.is_remote


def test_injected_headers_have_the_documented_shape() -> None:
    headers: CIMultiDict[str] = CIMultiDict()
    MeshPropagator(inject=FORMATS).inject(headers, context_with(True))
    assert headers["traceparent"] == f"00-{TID}-{SID}-01"
    assert headers["b3"] == f"{TID}-{SID}-1"
    assert (headers["X-B3-TraceId"], headers["X-B3-SpanId"], headers["X-B3-Sampled"]) == (TID, SID, "1")
    assert (headers["X-Trace-Id"], headers["X-Span-Id"], headers["X-Trace-Flags"]) == (TID, SID, "01")


def test_tracestate_and_baggage_round_trip() -> None:
    state = TraceState([("vendor", "opaque-1"), ("other", "x")])
    ctx = baggage.set_baggage("tenant", "acme corp", context_with(True, state))
    headers: CIMultiDict[str] = CIMultiDict()
    MeshPropagator().inject(headers, ctx)
    out = MeshPropagator().extract(headers)
    sc = trace.get_current_span(out).get_span_context()
    assert sc.trace_state == state
    assert baggage.get_baggage("tenant", out) == "acme corp"


def test_interoperates_with_opentelemetry_w3c_propagator() -> None:
    theirs: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(theirs, context_with(True))
    assert extracted(theirs).trace_id == TRACE_ID
    ours: dict[str, str] = {}
    MeshPropagator(inject=["tracecontext"]).inject(ours, context_with(False))
    sc = trace.get_current_span(TraceContextTextMapPropagator().extract(ours)).get_span_context()
    assert (sc.trace_id, sc.span_id, sc.trace_flags.sampled) == (TRACE_ID, SPAN_ID, False)


def test_traceparent_wins_over_other_formats() -> None:
    headers = {
        "b3": f"{OTHER_TID}-{SID}-1",
        "X-B3-TraceId": OTHER_TID,
        "X-B3-SpanId": SID,
        "X-Trace-Id": OTHER_TID,
        "X-Span-Id": SID,
        "traceparent": f"00-{TID}-{SID}-01",
    }
    assert extracted(headers).trace_id == TRACE_ID


def test_b3_single_wins_over_multi_and_seed() -> None:
    headers = {"X-B3-TraceId": OTHER_TID, "X-B3-SpanId": SID, "b3": f"{TID}-{SID}", "X-Trace-Id": OTHER_TID}
    assert extracted(headers).trace_id == TRACE_ID


def test_malformed_higher_priority_header_falls_through_to_a_valid_one() -> None:
    headers = {"traceparent": "00-garbage", "X-Trace-Id": TID, "X-Span-Id": SID}
    assert extracted(headers).trace_id == TRACE_ID


@pytest.mark.parametrize(
    ("flags", "sampled", "mask"),
    [("03", True, 0x03), ("02", False, 0x02), ("01", True, 0x01), ("00", False, 0x00), ("ff", True, 0xFF)],
)
def test_traceparent_flags_are_a_bit_mask(flags: str, sampled: bool, mask: int) -> None:
    sc = extracted({"traceparent": f"00-{TID}-{SID}-{flags}"})
    assert (sc.trace_flags.sampled, int(sc.trace_flags)) == (sampled, mask)


@pytest.mark.parametrize(
    ("value", "mask"),
    [("03", 3), ("02", 2), ("0x03", 3), ("0X0a", 10), ("1", 1), ("3", 3), ("255", 255), ("10", 16)],
)
def test_seed_flags_parse_as_a_bit_mask(value: str, mask: int) -> None:
    assert parse_flags(value) == mask
    sc = extracted({"X-Trace-Id": TID, "X-Span-Id": SID, "X-Trace-Flags": value})
    assert sc.trace_flags.sampled == bool(mask & 1)


@pytest.mark.parametrize("value", ["256", "-1", "0x100", "abc", "1.0", "", "0x"])
def test_bad_seed_flags_are_rejected(value: str) -> None:
    if value:
        assert parse_flags(value) is None
        assert not extracted({"X-Trace-Id": TID, "X-Span-Id": SID, "X-Trace-Flags": value}).is_valid


def test_seed_headers_accept_uuid_and_64_bit_trace_ids() -> None:
    uuid = "4bf92f35-77b3-4da6-a3ce-929d0e0e4736"
    assert extracted({"X-Trace-Id": uuid, "X-Span-Id": SID}).trace_id == TRACE_ID
    short = extracted({"X-Trace-Id": "a3ce929d0e0e4736", "X-Span-Id": SID})
    assert short.trace_id == 0xA3CE929D0E0E4736
    assert short.trace_flags.sampled  # ids without flags: continue the trace


@pytest.mark.parametrize(
    ("headers", "sampled"),
    [
        ({"b3": f"{TID}-{SID}-d"}, True),
        ({"b3": f"{TID}-{SID}-0-{SID}"}, False),
        ({"X-B3-TraceId": TID, "X-B3-SpanId": SID, "X-B3-Sampled": "true"}, True),
        ({"X-B3-TraceId": TID, "X-B3-SpanId": SID, "X-B3-Sampled": "0", "X-B3-Flags": "1"}, True),
        ({"X-B3-TraceId": TID, "X-B3-SpanId": SID, "X-B3-Sampled": "0"}, False),
    ],
)
def test_b3_sampling_variants(headers: dict[str, str], sampled: bool) -> None:
    sc = extracted(headers)
    assert sc.is_valid and sc.trace_flags.sampled == sampled


@pytest.mark.parametrize(
    "headers",
    [
        {"traceparent": f"00-{TID}-{SID}-01" + " " * MAX_TRACE_HEADER},
        {"b3": f"{TID}-{SID}-1-" + "0" * MAX_TRACE_HEADER},
        {"X-Trace-Id": TID + " " * MAX_TRACE_HEADER, "X-Span-Id": SID},
        {"traceparent": f"00-{'0' * 32}-{SID}-01"},  # an all-zero trace id is invalid
        {"traceparent": f"00-{TID}-{'0' * 16}-01"},
        {"traceparent": f"ff-{TID}-{SID}-01"},  # version ff is forbidden
        {"traceparent": f"00-{TID}-{SID}-01-extra"},  # version 00 has exactly four fields
        {"traceparent": f"00-{TID.upper()}-{SID}-01"},  # W3C ids are lower-case
        {"b3": "1"},  # a sampling decision alone carries no ids
        {"X-B3-TraceId": TID},
    ],
)
def test_malformed_or_oversized_headers_start_a_new_trace(headers: dict[str, str]) -> None:
    assert not extracted(headers).is_valid


def test_a_future_traceparent_version_may_carry_more_fields() -> None:
    assert extracted({"traceparent": f"01-{TID}-{SID}-01-whatever"}).trace_id == TRACE_ID


def test_oversized_tracestate_and_baggage_are_dropped_but_the_trace_continues() -> None:
    headers = {
        "traceparent": f"00-{TID}-{SID}-01",
        "tracestate": "k=" + "v" * 600,
        "baggage": "k=" + "v" * 9000,
    }
    ctx = MeshPropagator().extract(CIMultiDict(headers))
    sc = trace.get_current_span(ctx).get_span_context()
    assert sc.trace_id == TRACE_ID and not sc.trace_state
    assert baggage.get_all(ctx) == {}


def test_non_ascii_baggage_is_ignored() -> None:
    # OpenTelemetry's own baggage propagator raises UnicodeEncodeError on a lone surrogate,
    # which aiohttp can hand over when a client sends invalid UTF-8.
    ctx = MeshPropagator().extract(CIMultiDict({"baggage": "a=\udc80", "traceparent": f"00-{TID}-{SID}-01"}))
    assert baggage.get_all(ctx) == {}
    assert trace.get_current_span(ctx).get_span_context().trace_id == TRACE_ID


def test_unknown_inject_format_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"^inject: unknown format 'jaeger'"):
        MeshPropagator(inject=["jaeger"])


HEADER_NAMES = [
    "traceparent",
    "tracestate",
    "baggage",
    "b3",
    "X-B3-TraceId",
    "X-B3-SpanId",
    "X-B3-Sampled",
    "X-B3-Flags",
    "X-Trace-Id",
    "X-Span-Id",
    "X-Trace-Flags",
]
ANY_TEXT = st.text(alphabet=st.characters(exclude_categories=()), max_size=600)  # surrogates too
HEXISH = st.text(alphabet="0123456789abcdefABCDEF-xX \t", max_size=80)
GARBAGE = st.one_of(ANY_TEXT, HEXISH)


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(HEADER_NAMES), value=GARBAGE)
def test_fuzzed_header_alone_never_raises_and_yields_a_root_or_valid_context(name: str, value: str) -> None:
    ctx = MeshPropagator().extract(CIMultiDict({name: value}))
    sc = trace.get_current_span(ctx).get_span_context()
    if sc.is_valid:  # only a parse that produced real ids
        assert 0 < sc.trace_id < 2**128 and 0 < sc.span_id < 2**64 and 0 <= int(sc.trace_flags) <= 255
        assert name.lower() in {"b3", "traceparent"}


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(HEADER_NAMES), value=GARBAGE)
def test_fuzzed_header_beside_a_valid_traceparent_keeps_the_original(name: str, value: str) -> None:
    headers = CIMultiDict({"traceparent": f"00-{TID}-{SID}-01"})
    if name != "traceparent":
        headers[name] = value
        sc = trace.get_current_span(MeshPropagator().extract(headers)).get_span_context()
        assert (sc.trace_id, sc.span_id) == (TRACE_ID, SPAN_ID)


@settings(max_examples=200, deadline=None)
@given(values=st.dictionaries(st.sampled_from(HEADER_NAMES), GARBAGE, max_size=len(HEADER_NAMES)))
def test_fuzzed_header_sets_never_raise(values: dict[str, str]) -> None:
    MeshPropagator().extract(CIMultiDict(values))


VALID_VALUES = {  # a value each field would accept, so that whole formats appear in the examples
    "traceparent": f"00-{TID}-{SID}-01",
    "tracestate": "k=v",
    "b3": f"{TID}-{SID}-1",
    "X-B3-TraceId": TID,
    "X-B3-SpanId": SID,
    "X-B3-Sampled": "1",
    "X-Trace-Id": TID,
    "X-Span-Id": SID,
    "X-Trace-Flags": "01",
}


@settings(max_examples=300, deadline=None)
@given(
    names=st.lists(st.sampled_from([*HEADER_NAMES, "Host", "Accept"]), unique=True, max_size=6),
    upper=st.lists(st.booleans(), min_size=6, max_size=6),
    garbage=st.lists(GARBAGE, min_size=6, max_size=6),
)
def test_a_multidict_without_any_format_s_anchor_field_reads_as_the_full_lookups_do(
    names: list[str], upper: list[bool], garbage: list[str]
) -> None:
    """The early return for a multidict with no anchor field (traceparent, b3, X-B3-TraceId,
    X-Trace-Id) gives what the lookups give on the same fields behind a proxy (no early return)."""
    pairs = [
        (n.upper() if up else n, VALID_VALUES.get(n, g))
        for n, up, g in zip(names, upper, garbage, strict=False)
    ]
    propagator = MeshPropagator()
    headers = CIMultiDict(pairs)
    assert propagator.extract_with_format(headers) == propagator.extract_with_format(
        CIMultiDictProxy(headers)
    )


def test_default_writes_w3c_only_and_reads_every_format() -> None:
    headers: CIMultiDict[str] = CIMultiDict()
    MeshPropagator().inject(headers, context_with(True))
    assert headers["traceparent"] == f"00-{TID}-{SID}-01"
    assert not {"X-Trace-Id", "X-Span-Id", "X-Trace-Flags", "b3", "X-B3-TraceId", "X-B3-SpanId"} & set(
        headers
    )
    assert MeshPropagator().formats == DEFAULT_INJECT
    for fmt in FORMATS:  # extraction is not limited to the injected formats
        written: CIMultiDict[str] = CIMultiDict()
        MeshPropagator(inject=[fmt], baggage=False).inject(written, context_with(True))
        assert extracted(written, MeshPropagator()).span_id == SPAN_ID


def test_data_path_headers_equal_the_generic_injection() -> None:
    propagator = MeshPropagator(inject=FORMATS, baggage=False)
    generic: CIMultiDict[str] = CIMultiDict()
    propagator.inject(generic, context_with(False))
    fast = propagator.with_trace_headers(CIMultiDict(), TID, SID, 0)
    assert sorted(fast.items()) == sorted(generic.items())


@pytest.mark.parametrize("inject", [DEFAULT_INJECT, ("seed", "tracecontext"), FORMATS])
@pytest.mark.parametrize("sampled", [True, False])
@pytest.mark.parametrize("state", [None, TraceState([("vendor", "x")])])
def test_data_path_headers_equal_the_generic_injection_for_every_choice(
    inject: tuple[str, ...], sampled: bool, state: TraceState | None
) -> None:
    propagator = MeshPropagator(inject=inject, baggage=False)
    generic: CIMultiDict[str] = CIMultiDict()
    propagator.inject(generic, context_with(sampled, state))
    fast = propagator.with_trace_headers(CIMultiDict(), TID, SID, int(sampled), None, state)
    assert sorted(fast.items()) == sorted(generic.items())
    child = propagator.with_trace_headers(CIMultiDict(), TID, SID, int(sampled), 0x4444444444444444, state)
    assert child["X-Parent-Span-Id"] == "4" * 16 if "seed" in inject else "X-Parent-Span-Id" not in child
    assert "x-trace-id" in child if "seed" in inject else "traceparent" in child  # case-insensitive keys


def test_data_path_copies_and_rewrites_any_format_the_caller_sent() -> None:
    stale = "1" * 32
    original: CIMultiDict[str] = CIMultiDict(
        {
            "Accept": "text/plain",
            "b3": f"{stale}-{'2' * 16}-1",
            "X-B3-TraceId": stale,
            "X-B3-SpanId": "3" * 16,
        }
    )
    out = MeshPropagator().with_trace_headers(original, TID, SID, 1, 0x4444444444444444)
    assert out["b3"] == f"{TID}-{SID}-1"
    assert (out["X-B3-TraceId"], out["X-B3-SpanId"], out["X-B3-ParentSpanId"]) == (TID, SID, "4" * 16)
    assert out["traceparent"] == f"00-{TID}-{SID}-01" and "X-Parent-Span-Id" not in out
    assert len(out.getall("b3")) == 1 and out["Accept"] == "text/plain"
    assert original["X-B3-TraceId"] == stale and "traceparent" not in original  # the caller's copy untouched


def test_data_path_sends_the_current_baggage_only_when_there_is_some() -> None:
    propagator = MeshPropagator()
    assert "baggage" not in propagator.with_trace_headers(CIMultiDict(), TID, SID, 1)
    token = attach(baggage.set_baggage("tenant", "acme"))
    try:
        out = propagator.with_trace_headers(CIMultiDict(), TID, SID, 1)
    finally:
        detach(token)
    assert out["baggage"] == "tenant=acme"
    assert "baggage" not in MeshPropagator(baggage=False).with_trace_headers(CIMultiDict(), TID, SID, 1)


@pytest.mark.parametrize(
    ("arrived", "expected"),
    [
        ({"X-Trace-Id": "5" * 32, "X-Span-Id": "6" * 16}, {"X-Trace-Id", "X-Span-Id", "X-Trace-Flags"}),
        ({"b3": f"{'5' * 32}-{'6' * 16}-1"}, {"b3"}),
        ({"X-B3-TraceId": "5" * 32, "X-B3-SpanId": "6" * 16}, {"X-B3-TraceId", "X-B3-SpanId"}),
        ({"traceparent": f"00-{'5' * 32}-{'6' * 16}-01"}, set()),
    ],
)
def test_a_trace_goes_on_in_the_dialect_it_arrived_in(arrived: dict[str, str], expected: set[str]) -> None:
    """A handler that got the seed's (or B3) headers calls on with them beside W3C's."""
    propagator = MeshPropagator()
    token = attach(propagator.extract(CIMultiDict(arrived)))
    try:
        fast = propagator.with_trace_headers(CIMultiDict(), TID, SID, 1, 0x4444444444444444)
        generic: CIMultiDict[str] = CIMultiDict()
        propagator.inject(generic)  # the current span: the caller's, as extracted
    finally:
        detach(token)
    seed_and_b3 = {"X-Trace-Id", "X-Span-Id", "X-Trace-Flags", "b3", "X-B3-TraceId", "X-B3-SpanId"}
    assert fast["traceparent"] == f"00-{TID}-{SID}-01"
    assert {name for name in seed_and_b3 if name in fast} == expected
    assert {name for name in seed_and_b3 if name in generic} == expected
    assert all(fast[name] in (TID, SID, "01", f"{TID}-{SID}-1") for name in expected)
    outside = propagator.with_trace_headers(CIMultiDict(), TID, SID, 1)  # no trace arrived here
    assert set(outside) == {"traceparent"}
