"""Lightweight client spans: OpenTelemetry's data model and export pipeline, without its per-span cost.

The SDK's `Tracer.start_span` validates, locks and bounds every attribute, asks the
sampler through three layers of calls and notifies every processor twice; measured here,
two such spans per call cost more than the HTTP call they describe. A client span in
meshkit is written once by one layer and never shared, so `ClientSpan` keeps plain
fields and, only when the trace is sampled, hands itself to the SDK processors (batch
export, the in-memory exporter, OTLP) on `end()`: it IS an SDK `ReadableSpan` (the
fields the SDK's properties read are set directly), so no second object is built per
span. Sampling is the SDK's `ParentBased(TraceIdRatioBased(ratio))` rule computed inline:
a child follows its parent's sampled bit; a root is kept when the low 64 bits of its
trace id fall under `ratio * 2**64`. Processors see `on_end` only (no `on_start`): the
SDK's batch and simple processors need no more. Ids come from `random.getrandbits`, as
the SDK's generator; their hex forms (for headers and the seed's `trace_id`) are made
once per span, with `int.to_bytes().hex()` (a third of an f-string's cost).
"""

from __future__ import annotations

import random
import time
import traceback
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    DEFAULT_TRACE_STATE,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)

from meshkit.observe.propagation import span_hex, trace_hex

SAMPLED = 0x01
RANDOM_TRACE_ID = 0x02  # W3C level 2: the trace id's right 56 bits are random
_UNSET = Status(StatusCode.UNSET)
_ERROR = Status(StatusCode.ERROR)
_LOW_64 = (1 << 64) - 1
_TRACE_FLAGS = tuple(TraceFlags(bits) for bits in range(256))  # one instance per mask, not one per span
_NO_ATTRIBUTES: Mapping[str, Any] = MappingProxyType({})
_NO_STATE = DEFAULT_TRACE_STATE
_getrandbits = random.getrandbits
_time_ns = time.time_ns


class SpanSink:
    """Where finished client spans go: the provider's processors, its resource and scope."""

    __slots__ = ("bound", "on_end", "processor", "resource", "scope")

    def __init__(
        self, processor: SpanProcessor, resource: Resource, scope: InstrumentationScope, ratio: float
    ):
        self.processor = processor
        self.on_end = processor.on_end
        self.resource = resource
        self.scope = scope
        self.bound = round(ratio * (_LOW_64 + 1))  # as TraceIdRatioBased.get_bound_for_rate

    def start(self, name: str, parent: SpanContext | ClientSpan | None) -> ClientSpan:
        if parent is None or not parent.is_valid:
            trace_id = _getrandbits(128) or 1
            flags = RANDOM_TRACE_ID | (SAMPLED if trace_id & _LOW_64 < self.bound else 0)
            return ClientSpan(self, name, trace_id, trace_hex(trace_id), flags, None, None)
        flags = parent.trace_flags & (SAMPLED | RANDOM_TRACE_ID)
        hex_id = parent.trace_hex if isinstance(parent, ClientSpan) else trace_hex(parent.trace_id)
        return ClientSpan(self, name, parent.trace_id, hex_id, flags, parent.trace_state, parent)


class ClientSpan(ReadableSpan):
    """One CLIENT span written by one layer; on `end()`, when its trace is sampled, it is exported as is.

    Write attributes with `set_attribute` / `set_attributes` (`attributes` is the SDK's
    read-only view). The underscored fields are the ones `ReadableSpan` reads.
    """

    __slots__ = (
        "_attributes",
        "_context",
        "_end_time",
        "_instrumentation_scope",
        "_name",
        "_parent",
        "_parent_span",
        "_resource",
        "_sink",
        "_span_hex",
        "_start_time",
        "span_id",
        "trace_flags",
        "trace_hex",
        "trace_id",
        "trace_state",
    )

    is_valid = True
    _kind = SpanKind.CLIENT
    _instrumentation_info = None
    _links = ()
    _events: Sequence[Event] = ()  # a list of its own once an exception is recorded
    _status = _UNSET

    def __init__(  # the base __init__ is not called: every field it would set is set here or above
        self,
        sink: SpanSink,
        name: str,
        trace_id: int,
        trace_hex: str,
        flags: int,
        trace_state: TraceState | None,
        parent: SpanContext | ClientSpan | None,
    ) -> None:
        self._sink = sink
        self._name = name
        self.trace_id = trace_id
        self.trace_hex = trace_hex
        self.span_id = _getrandbits(64) or 1
        self._span_hex: str | None = None
        self.trace_flags = flags
        self.trace_state = trace_state
        self._parent_span = parent
        self._parent: SpanContext | None = None  # the parent's SpanContext, set on end()
        self._context: SpanContext | None = None
        self._resource = sink.resource
        self._instrumentation_scope = sink.scope
        self._start_time = _time_ns()
        self._end_time: int | None = None
        self._attributes: Mapping[str, Any] = _NO_ATTRIBUTES  # a dict of its own from the first one set

    @property
    def sampled(self) -> bool:
        return bool(self.trace_flags & SAMPLED)

    @property
    def span_hex(self) -> str:
        value = self._span_hex
        if value is None:
            value = self._span_hex = span_hex(self.span_id)
        return value

    @property
    def parent_span_id(self) -> int | None:
        parent = self._parent_span
        return None if parent is None else parent.span_id

    @property
    def parent_span_hex(self) -> str | None:
        parent = self._parent_span
        if parent is None:
            return None
        return parent.span_hex if isinstance(parent, ClientSpan) else span_hex(parent.span_id)

    @property
    def context(self) -> SpanContext:
        """The span's OpenTelemetry `SpanContext` (built once, when first asked for)."""
        context = self._context
        if context is None:
            context = self._context = self._span_context()
        return context

    def _span_context(self) -> SpanContext:
        # SpanContext.__new__'s own tuple, built without its validation: the ids are known valid
        # (non-zero, in range) and trace_state is never None. tests/observe/test_spans.py checks
        # it equals SpanContext(...) field for field.
        state = self.trace_state
        fields = (
            self.trace_id,
            self.span_id,
            False,
            _TRACE_FLAGS[self.trace_flags],
            state or _NO_STATE,
            True,
        )
        return tuple.__new__(SpanContext, fields)

    def get_span_context(self) -> SpanContext:
        return self.context

    def set_attribute(self, key: str, value: Any) -> None:
        attributes = self._attributes
        if attributes is _NO_ATTRIBUTES:
            self._attributes = {key: value}
        else:
            attributes[key] = value  # type: ignore[index]

    def set_attributes(self, attributes: dict[str, Any]) -> None:
        """Add `attributes`; the span keeps the dict itself (no copy) when it has none yet."""
        if self._attributes is _NO_ATTRIBUTES:
            self._attributes = attributes
        else:
            self._attributes.update(attributes)  # type: ignore[attr-defined]

    def set_error(self, description: str | None = None) -> None:
        self._status = _ERROR if description is None else Status(StatusCode.ERROR, description)

    def record_exception(self, exc: BaseException) -> None:
        """An "exception" event with the attributes the SDK's `Span.record_exception` writes."""
        kind = type(exc)
        module = kind.__module__
        event = Event(
            "exception",
            {
                "exception.type": kind.__qualname__
                if module == "builtins"
                else f"{module}.{kind.__qualname__}",
                "exception.message": str(exc),
                "exception.stacktrace": "".join(traceback.format_exception(exc)),
                "exception.escaped": "False",
            },
        )
        self._events = [*self._events, event]

    def end(self) -> None:
        if not self.trace_flags & SAMPLED:
            return
        self._end_time = _time_ns()
        parent = self._parent_span
        if parent is not None:
            self._parent = parent.context if isinstance(parent, ClientSpan) else parent
        if self._context is None:
            self._context = self._span_context()
        self._sink.on_end(self)
