"""Lightweight client spans: OpenTelemetry's data model and export pipeline, without its per-span cost.

The SDK's `Tracer.start_span` validates, locks and bounds every attribute, asks the
sampler through three layers of calls and notifies every processor twice; measured here,
two such spans per call cost more than the HTTP call they describe. A client span in
meshkit is written once by one layer and never shared, so `ClientSpan` keeps plain
fields and, only when the trace is sampled, hands the SDK processors (batch export, the
in-memory exporter, OTLP) a finished `ReadableSpan` on `end()`. Sampling is the SDK's
`ParentBased(TraceIdRatioBased(ratio))` rule computed inline: a child follows its
parent's sampled bit; a root is kept when the low 64 bits of its trace id fall under
`ratio * 2**64`. Processors see `on_end` only (no `on_start`): the SDK's batch and simple
processors need no more. Ids come from `random.getrandbits`, as the SDK's generator.
"""

from __future__ import annotations

import random
import time
import traceback
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

SAMPLED = 0x01
RANDOM_TRACE_ID = 0x02  # W3C level 2: the trace id's right 56 bits are random
_UNSET = Status(StatusCode.UNSET)
_ERROR = Status(StatusCode.ERROR)
_LOW_64 = (1 << 64) - 1


class SpanSink:
    """Where finished client spans go: the provider's processors, its resource and scope."""

    __slots__ = ("bound", "processor", "resource", "scope")

    def __init__(
        self, processor: SpanProcessor, resource: Resource, scope: InstrumentationScope, ratio: float
    ):
        self.processor = processor
        self.resource = resource
        self.scope = scope
        self.bound = round(ratio * (_LOW_64 + 1))  # as TraceIdRatioBased.get_bound_for_rate

    def start(self, name: str, parent: SpanContext | ClientSpan | None) -> ClientSpan:
        if parent is None or not parent.is_valid:
            trace_id = random.getrandbits(128) or 1
            flags = RANDOM_TRACE_ID | (SAMPLED if trace_id & _LOW_64 < self.bound else 0)
            return ClientSpan(self, name, trace_id, flags, None, None)
        flags = parent.trace_flags & (SAMPLED | RANDOM_TRACE_ID)
        return ClientSpan(self, name, parent.trace_id, flags, parent.trace_state, parent)


class ClientSpan:
    """One CLIENT span written by one layer; exported on `end()` when its trace is sampled."""

    __slots__ = (
        "_context",
        "_events",
        "_parent",
        "_sink",
        "_status",
        "attributes",
        "name",
        "span_id",
        "start_time",
        "trace_flags",
        "trace_id",
        "trace_state",
    )

    is_valid = True

    def __init__(
        self,
        sink: SpanSink,
        name: str,
        trace_id: int,
        flags: int,
        trace_state: TraceState | None,
        parent: SpanContext | ClientSpan | None,
    ) -> None:
        self._sink = sink
        self.name = name
        self.trace_id = trace_id
        self.span_id = random.getrandbits(64) or 1
        self.trace_flags = flags
        self.trace_state = trace_state
        self._parent = parent
        self._context: SpanContext | None = None
        self._status = _UNSET
        self._events: list[Event] = []
        self.attributes: dict[str, Any] = {}
        self.start_time = time.time_ns()

    @property
    def sampled(self) -> bool:
        return bool(self.trace_flags & SAMPLED)

    @property
    def parent_span_id(self) -> int | None:
        return None if self._parent is None else self._parent.span_id

    @property
    def context(self) -> SpanContext:
        """The span's OpenTelemetry `SpanContext` (built once, when first asked for)."""
        if self._context is None:
            flags = TraceFlags(self.trace_flags)
            self._context = SpanContext(self.trace_id, self.span_id, False, flags, self.trace_state)
        return self._context

    def set_error(self, description: str | None = None) -> None:
        self._status = _ERROR if description is None else Status(StatusCode.ERROR, description)

    def record_exception(self, exc: BaseException) -> None:
        """An "exception" event with the attributes the SDK's `Span.record_exception` writes."""
        kind = type(exc)
        module = kind.__module__
        self._events.append(
            Event(
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
        )

    def end(self) -> None:
        if not self.trace_flags & SAMPLED:
            return
        sink, parent = self._sink, self._parent
        readable = ReadableSpan(
            self.name,
            context=self.context,
            parent=parent.context if isinstance(parent, ClientSpan) else parent,
            resource=sink.resource,
            attributes=self.attributes,
            events=self._events,
            kind=SpanKind.CLIENT,
            status=self._status,
            start_time=self.start_time,
            end_time=time.time_ns(),
            instrumentation_scope=sink.scope,
        )
        sink.processor.on_end(readable)
