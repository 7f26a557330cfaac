"""Trace context in and out of HTTP headers: W3C, B3 (single and multi) and the seed's X-Trace-*.

A mesh sits between services written with different tracers, so `MeshPropagator`
reads whichever format a caller sent. Extraction takes the first
VALID context in this order: W3C `traceparent` (with `tracestate`), B3 single `b3`, B3
multi `X-B3-*`, then the seed's `X-Trace-Id`/`X-Span-Id`/`X-Trace-Flags`. A malformed or
oversized header is treated as absent (the next format is tried, and with none left the
call starts a new trace); extraction never raises on what a client sent.

Injection writes the formats chosen with `inject=`: by default (`DEFAULT_INJECT`) W3C
`traceparent` alone, the standard every current tracer reads; the seed's `X-Trace-*` and B3
single and multi are opt-in (`MeshPropagator(inject=FORMATS)` writes all four). Every header
costs the transport 4-6k instructions a request (callgrind: the seed's four headers were a
third of what tracing cost an aiohttp client). A caller's dialect is kept, as Linkerd and
Envoy keep B3: on the data path (`with_trace_headers`) a format the outgoing request
already carries (a B3 or seed caller's headers forwarded by `/call` or the sidecar) is
written too, replaced by this attempt's ids, so no stale context goes on beside ours; and
a trace that arrived at this service in another format (`extract()` notes it in the
context, which the server middleware makes current) goes on in that format as well as W3C,
so a seed-era service called from a handler still gets its `X-Trace-Id`.

Formats: W3C Trace Context (w3.org/TR/trace-context), B3 (github.com/openzipkin/b3-propagation).
Trace flags are a bit mask: newer SDKs set 0x02 ("random trace id") beside 0x01
("sampled"), so only `flags & 1` decides sampling and every bit is kept. The seed's
`X-Trace-Flags` is read as hex when it has a `0x` prefix or is exactly two hex digits
(the W3C form, which is what meshkit writes: "01", "03"), otherwise as a decimal 0-255.
When B3 or the seed's headers carry ids but no sampling decision, the context is taken
as sampled (a parent that sent ids wants the trace continued). W3C baggage is handled by
OpenTelemetry's own `W3CBaggagePropagator` (after a size and ASCII check);
`tracestate` by OpenTelemetry's `TraceState`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from typing import Any

from multidict import CIMultiDict, istr
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context, get_current
from opentelemetry.propagators.textmap import CarrierT, Getter, Setter, TextMapPropagator
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
BAGGAGE = "baggage"
B3_SINGLE = "b3"
B3_TRACE_ID = "X-B3-TraceId"
B3_SPAN_ID = "X-B3-SpanId"
B3_PARENT_SPAN_ID = "X-B3-ParentSpanId"
B3_SAMPLED = "X-B3-Sampled"
B3_FLAGS = "X-B3-Flags"
SEED_TRACE_ID = "X-Trace-Id"
SEED_SPAN_ID = "X-Span-Id"
SEED_PARENT_SPAN_ID = "X-Parent-Span-Id"
SEED_TRACE_FLAGS = "X-Trace-Flags"

MAX_TRACE_HEADER = 512  # characters; longer trace headers are ignored
MAX_TRACESTATE = 512
MAX_BAGGAGE = 8192

FORMATS = ("tracecontext", "b3", "b3multi", "seed")
DEFAULT_INJECT = ("tracecontext",)
ARRIVED_FORMAT_KEY = "meshkit.trace_format"  # context key: the format a trace arrived in, when not W3C
_DEFAULT_CHOSEN = frozenset(DEFAULT_INJECT)
_FIELDS = {
    "tracecontext": (TRACEPARENT, TRACESTATE),
    "b3": (B3_SINGLE,),
    "b3multi": (B3_TRACE_ID, B3_SPAN_ID, B3_PARENT_SPAN_ID, B3_SAMPLED, B3_FLAGS),
    "seed": (SEED_TRACE_ID, SEED_SPAN_ID, SEED_PARENT_SPAN_ID, SEED_TRACE_FLAGS),
}

_TRACEPARENT_RE = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?", re.DOTALL)
_TRACE_ID_RE = re.compile(r"[0-9a-fA-F]{32}|[0-9a-fA-F]{16}")
_SPAN_ID_RE = re.compile(r"[0-9a-fA-F]{16}")
_UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_HEX_FLAGS_RE = re.compile(r"0[xX][0-9a-fA-F]{1,2}|[0-9a-fA-F]{2}")
_DEC_FLAGS_RE = re.compile(r"[0-9]{1,3}")
_B3_SAMPLED = {"1": True, "d": True, "0": False}  # "d" is debug, which implies sampled
_B3_MULTI_SAMPLED = {"1": True, "true": True, "0": False, "false": False}
_BAGGAGE = W3CBaggagePropagator()
_HEX_BYTE = tuple(f"{i:02x}" for i in range(256))
# header names as istr: a CIMultiDict built from them skips folding each name's case (a third of its cost)
_TRACEPARENT_KEY, _TRACESTATE_KEY, _B3_SINGLE_KEY = istr(TRACEPARENT), istr(TRACESTATE), istr(B3_SINGLE)
_B3_TRACE_ID_KEY, _B3_SPAN_ID_KEY = istr(B3_TRACE_ID), istr(B3_SPAN_ID)
_B3_PARENT_SPAN_ID_KEY, _B3_SAMPLED_KEY = istr(B3_PARENT_SPAN_ID), istr(B3_SAMPLED)
_SEED_TRACE_ID_KEY, _SEED_SPAN_ID_KEY = istr(SEED_TRACE_ID), istr(SEED_SPAN_ID)
_SEED_PARENT_SPAN_ID_KEY, _SEED_TRACE_FLAGS_KEY = istr(SEED_PARENT_SPAN_ID), istr(SEED_TRACE_FLAGS)


def _current_context_getter() -> Callable[[], Context]:
    """OpenTelemetry's `get_current`, as the C `ContextVar.get` when its runtime context is the default."""
    variable = getattr(getattr(otel_context, "_RUNTIME_CONTEXT", None), "_current_context", None)
    return variable.get if isinstance(variable, ContextVar) else get_current


current_context = _current_context_getter()


def trace_hex(trace_id: int) -> str:
    """The 32 lowercase hex digits of a trace id (`to_bytes().hex()`: a third of an f-string's cost)."""
    return trace_id.to_bytes(16, "big").hex()


def span_hex(span_id: int) -> str:
    """The 16 lowercase hex digits of a span id."""
    return span_id.to_bytes(8, "big").hex()


class HeadersGetter(Getter[Any]):
    """Reads a multidict (meshkit's `CIMultiDict`, aiohttp's `CIMultiDictProxy`) or a plain mapping."""

    def get(self, carrier: Any, key: str) -> list[str] | None:
        getall = getattr(carrier, "getall", None)
        if getall is not None:
            values: list[str] | None = getall(key, None)
            return values
        value = carrier.get(key)
        if value is None:
            value = carrier.get(key.lower())
        return None if value is None else [value] if isinstance(value, str) else list(value)

    def keys(self, carrier: Any) -> list[str]:
        return list(carrier.keys())


class HeadersSetter(Setter[Any]):
    """Sets (replacing any earlier value) one header in a multidict or a plain dict."""

    def set(self, carrier: Any, key: str, value: str) -> None:
        carrier[key] = value


HEADERS_GETTER = HeadersGetter()
HEADERS_SETTER = HeadersSetter()
# The one field each format cannot do without: when a multidict of headers has none of
# them, no format can be extracted, and one C-level check says so for the four lookups.
_ANCHORS = frozenset(istr(name) for name in (TRACEPARENT, B3_SINGLE, B3_TRACE_ID, SEED_TRACE_ID))


def _first(getter: Getter[Any], carrier: Any, key: str, cap: int = MAX_TRACE_HEADER) -> str | None:
    values = getter.get(carrier, key)
    if not values:
        return None
    value = values[0]
    if not isinstance(value, str) or len(value) > cap:
        return None
    return value.strip(" \t")


def _span_context(
    trace_id: str, span_id: str, flags: int, state: TraceState | None = None
) -> SpanContext | None:
    tid, sid = int(trace_id, 16), int(span_id, 16)
    if tid == 0 or sid == 0:
        return None
    return SpanContext(tid, sid, is_remote=True, trace_flags=TraceFlags(flags), trace_state=state)


def parse_traceparent(value: str, tracestate: str | None = None) -> SpanContext | None:
    match = _TRACEPARENT_RE.fullmatch(value)
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest is not None):
        return None
    state = TraceState.from_header([tracestate]) if tracestate else None
    return _span_context(trace_id, span_id, int(flags, 16), state)


def parse_b3_single(value: str) -> SpanContext | None:
    fields = value.split("-")
    if not 2 <= len(fields) <= 4:
        return None  # a lone sampling decision ("0", "1", "d") carries no ids
    trace_id, span_id = fields[0], fields[1]
    sampled = _B3_SAMPLED.get(fields[2]) if len(fields) > 2 else True
    if len(fields) == 4 and not _SPAN_ID_RE.fullmatch(fields[3]):
        return None
    if sampled is None or not _TRACE_ID_RE.fullmatch(trace_id) or not _SPAN_ID_RE.fullmatch(span_id):
        return None
    return _span_context(trace_id, span_id, int(sampled))


def parse_b3_multi(
    trace_id: str, span_id: str | None, sampled: str | None, flags: str | None
) -> SpanContext | None:
    if span_id is None or not _TRACE_ID_RE.fullmatch(trace_id) or not _SPAN_ID_RE.fullmatch(span_id):
        return None
    if flags not in (None, "", "0", "1"):
        return None
    decision = _B3_MULTI_SAMPLED.get(sampled.lower()) if sampled else True
    if decision is None:
        return None
    return _span_context(trace_id, span_id, int(decision or flags == "1"))


def parse_flags(value: str) -> int | None:
    """The seed's X-Trace-Flags as an integer bit mask 0-255, or None if malformed."""
    if _HEX_FLAGS_RE.fullmatch(value):
        return int(value, 16)
    if _DEC_FLAGS_RE.fullmatch(value) and int(value) <= 255:
        return int(value)
    return None


def parse_seed(trace_id: str, span_id: str | None, flags: str | None) -> SpanContext | None:
    if span_id is None or not _SPAN_ID_RE.fullmatch(span_id):
        return None
    if _UUID_RE.fullmatch(trace_id):
        trace_id = trace_id.replace("-", "")
    elif not _TRACE_ID_RE.fullmatch(trace_id):
        return None
    mask = 1 if not flags else parse_flags(flags)
    return None if mask is None else _span_context(trace_id, span_id, mask)


class MeshPropagator(TextMapPropagator):
    """Extracts any of the supported formats; injects the chosen ones plus tracestate and baggage."""

    def __init__(self, inject: Iterable[str] = DEFAULT_INJECT, *, baggage: bool = True) -> None:
        chosen = tuple(inject)
        for name in chosen:
            if name not in FORMATS:
                raise ValueError(f"inject: unknown format {name!r}; allowed: {', '.join(FORMATS)}")
        self.formats = chosen
        self._chosen = _DEFAULT_CHOSEN if set(chosen) == _DEFAULT_CHOSEN else frozenset(chosen)
        self._others = tuple((name, _FIELDS[name][0]) for name in FORMATS if name not in chosen)
        self._baggage = baggage
        self._fields = {f for name in chosen for f in _FIELDS[name]} | ({BAGGAGE} if baggage else set())

    @property
    def fields(self) -> set[str]:
        return set(self._fields)

    def extract_span_context(self, carrier: Any, getter: Getter[Any] = HEADERS_GETTER) -> SpanContext | None:
        """The caller's span context from the first valid format present, or None."""
        return self.extract_with_format(carrier, getter)[0]

    def extract_with_format(
        self, carrier: Any, getter: Getter[Any] = HEADERS_GETTER
    ) -> tuple[SpanContext | None, str | None]:
        """The caller's span context and the format (a name in `FORMATS`) it came in, or (None, None)."""
        if (
            getter is HEADERS_GETTER
            and carrier.__class__ is CIMultiDict
            and carrier.keys().isdisjoint(_ANCHORS)
        ):
            return None, None  # the usual untraced request: no format's anchor field present
        value = _first(getter, carrier, TRACEPARENT)
        if value is not None:
            found = parse_traceparent(value, _first(getter, carrier, TRACESTATE, MAX_TRACESTATE))
            if found is not None:
                return found, "tracecontext"
        value = _first(getter, carrier, B3_SINGLE)
        if value is not None and (found := parse_b3_single(value)) is not None:
            return found, "b3"
        value = _first(getter, carrier, B3_TRACE_ID)
        if value is not None:
            span_id, sampled = _first(getter, carrier, B3_SPAN_ID), _first(getter, carrier, B3_SAMPLED)
            found = parse_b3_multi(value, span_id, sampled, _first(getter, carrier, B3_FLAGS))
            if found is not None:
                return found, "b3multi"
        value = _first(getter, carrier, SEED_TRACE_ID)
        if value is not None:
            span_id, flags = _first(getter, carrier, SEED_SPAN_ID), _first(getter, carrier, SEED_TRACE_FLAGS)
            found = parse_seed(value, span_id, flags)
            return (found, "seed") if found is not None else (None, None)
        return None, None

    def extract(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        getter: Getter[CarrierT] = HEADERS_GETTER,
    ) -> Context:
        ctx = Context() if context is None else context
        found, arrived = self.extract_with_format(carrier, getter)
        if found is not None:
            ctx = trace.set_span_in_context(NonRecordingSpan(found), ctx)
            if arrived != "tracecontext":  # the caller's dialect, kept for the calls this service makes
                ctx = otel_context.set_value(ARRIVED_FORMAT_KEY, arrived, ctx)
        raw = _first(getter, carrier, BAGGAGE, MAX_BAGGAGE)
        if raw and raw.isascii():
            ctx = _BAGGAGE.extract({BAGGAGE: raw}, ctx)
        return ctx

    def inject(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        setter: Setter[CarrierT] = HEADERS_SETTER,
    ) -> None:
        self.inject_span(carrier, trace.get_current_span(context), context, setter)

    def inject_span(
        self,
        carrier: Any,
        span: trace.Span,
        context: Context | None = None,
        setter: Setter[Any] = HEADERS_SETTER,
    ) -> None:
        """Write `span`'s ids (and the baggage of `context`, default current) into `carrier`."""
        sc = span.get_span_context()
        if sc.is_valid:
            parent: SpanContext | None = getattr(span, "parent", None)
            parent_id = None if parent is None else parent.span_id
            tid, sid = trace_hex(sc.trace_id), span_hex(sc.span_id)
            chosen = self._chosen
            arrived = (get_current() if context is None else context).get(ARRIVED_FORMAT_KEY)
            if isinstance(arrived, str) and arrived not in chosen:
                chosen = chosen | {arrived}
            for key, value in _pairs(chosen, tid, sid, sc.trace_flags, parent_id, sc.trace_state):
                setter.set(carrier, key, value)
        if self._baggage:
            _BAGGAGE.inject(carrier, context, setter)

    def with_trace_headers(
        self,
        headers: CIMultiDict[str],
        trace_hex: str,
        span_hex: str,
        flags: int,
        parent_span_id: int | None = None,
        trace_state: TraceState | None = None,
    ) -> CIMultiDict[str]:
        """The data path's injection: a copy of `headers` with this span's trace headers and the baggage.

        A format the caller's `headers` already carry is written too even when not chosen,
        so that no stale trace context of theirs goes on beside ours.
        """
        chosen = self._chosen
        if headers:
            for name, field in self._others:
                if field in headers:
                    chosen = chosen | {name}
        ctx = current_context()  # empty in the usual client task: no baggage, no caller's dialect
        if ctx:
            arrived = ctx.get(ARRIVED_FORMAT_KEY)
            if isinstance(arrived, str) and arrived not in chosen:
                chosen = chosen | {arrived}
        if chosen is _DEFAULT_CHOSEN and trace_state is None:  # the usual case, written inline
            pairs: list[tuple[str, str]] = [
                (_TRACEPARENT_KEY, f"00-{trace_hex}-{span_hex}-{_HEX_BYTE[flags & 0xFF]}")
            ]
        else:
            pairs = _pairs(chosen, trace_hex, span_hex, flags, parent_span_id, trace_state)
        if self._baggage and ctx:
            carrier: dict[str, str] = {}
            _BAGGAGE.inject(carrier)
            pairs.extend(carrier.items())
        if not headers:
            return CIMultiDict(pairs)
        out = headers.copy()
        out.update(pairs)
        return out


def _pairs(
    formats: frozenset[str],
    tid: str,
    sid: str,
    flags: int,
    parent_id: int | None,
    trace_state: TraceState | None,
) -> list[tuple[str, str]]:
    flags_hex = _HEX_BYTE[flags & 0xFF]
    pairs: list[tuple[str, str]] = []
    sends_parent = not formats.isdisjoint(("seed", "b3multi"))  # the formats that send the parent's id
    parent = span_hex(parent_id) if parent_id is not None and sends_parent else None
    if "tracecontext" in formats:
        pairs.append((_TRACEPARENT_KEY, f"00-{tid}-{sid}-{flags_hex}"))
        if trace_state:
            pairs.append((_TRACESTATE_KEY, trace_state.to_header()))
    if "seed" in formats:
        pairs += ((_SEED_TRACE_ID_KEY, tid), (_SEED_SPAN_ID_KEY, sid), (_SEED_TRACE_FLAGS_KEY, flags_hex))
        if parent is not None:
            pairs.append((_SEED_PARENT_SPAN_ID_KEY, parent))
    if "b3" in formats:
        pairs.append((_B3_SINGLE_KEY, f"{tid}-{sid}-{'1' if flags & 1 else '0'}"))
    if "b3multi" in formats:
        pairs += (
            (_B3_TRACE_ID_KEY, tid),
            (_B3_SPAN_ID_KEY, sid),
            (_B3_SAMPLED_KEY, "1" if flags & 1 else "0"),
        )
        if parent is not None:
            pairs.append((_B3_PARENT_SPAN_ID_KEY, parent))
    return pairs


DEFAULT_PROPAGATOR = MeshPropagator()
