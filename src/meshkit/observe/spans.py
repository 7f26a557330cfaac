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
the SDK's generator. A trace id's hex form (the seed's `trace_id`, headers) is made once per
trace and a span id's only where it goes out (the attempt's `traceparent`), with
`int.to_bytes().hex()` (a third of an f-string's cost): a call span's id never needs one.
"""

from __future__ import annotations

import collections
import random
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from operator import attrgetter
from types import MappingProxyType
from typing import Any, Protocol

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor, SynchronousMultiSpanProcessor
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

from meshkit.observe.propagation import span_hex

SAMPLED = 0x01
RANDOM_TRACE_ID = 0x02  # W3C level 2: the trace id's right 56 bits are random
_KEPT_FLAGS = SAMPLED | RANDOM_TRACE_ID  # the parent's flags a child keeps
_UNSET = Status(StatusCode.UNSET)
_ERROR = Status(StatusCode.ERROR)
_LOW_64 = (1 << 64) - 1
_TRACE_FLAGS = tuple(TraceFlags(bits) for bits in range(256))  # one instance per mask, not one per span
_NO_ATTRIBUTES: dict[str, Any] = {}  # a span's until it has one of its own: never written to
_NO_STATE = DEFAULT_TRACE_STATE
_getrandbits = random.getrandbits
_time_ns = time.time_ns
_new_span = object.__new__


class SpanLane(Protocol):
    """A processor that takes ended client spans by a direct append to its queue, not a call per span.

    After an append that leaves `len(queue) >= wake_at`, the span's `end()` calls `overflow()`
    (drop beyond capacity, wake the exporter). `BatchingSpanProcessor` is one.
    """

    queue: collections.deque[ReadableSpan]
    wake_at: int

    def overflow(self) -> None: ...


class SpanPipeline(SynchronousMultiSpanProcessor):
    """The provider's processors, which its sinks call directly when there is only one (a call saved)."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.sinks: list[SpanSink] = []

    def add_span_processor(self, span_processor: SpanProcessor) -> None:
        super().add_span_processor(span_processor)
        for sink in self.sinks:
            sink.route(self)


class SpanSink:
    """Where finished client spans go: the provider's processors, its resource and scope."""

    __slots__ = ("bound", "lane", "on_end", "processor", "queue", "resource", "scope")

    def __init__(
        self, processor: SpanProcessor, resource: Resource, scope: InstrumentationScope, ratio: float
    ):
        self.processor = processor
        if isinstance(processor, SpanPipeline):
            processor.sinks.append(self)
        self.route(processor)
        self.resource = resource
        self.scope = scope
        self.bound = round(ratio * (_LOW_64 + 1))  # as TraceIdRatioBased.get_bound_for_rate

    def route(self, processor: SpanProcessor) -> None:
        """Send ended spans to `processor`; to its one processor directly, by its queue when it has one."""
        if isinstance(processor, SpanPipeline) and len(processor._span_processors) == 1:
            processor = processor._span_processors[0]
        self.on_end: Callable[[ReadableSpan], None] = processor.on_end
        lane: SpanLane | None = None
        if isinstance(getattr(processor, "wake_at", None), int):
            lane = processor  # type: ignore[assignment]
        self.lane = lane
        self.queue = None if lane is None else lane.queue

    def start(self, name: str, parent: SpanContext | ClientSpan | None) -> ClientSpan:
        """A new span, child of `parent` (a root when it is None or invalid), started now."""
        span = _new_span(ClientSpan)  # its fields set here: one call per span, not two
        if parent is None or not parent.is_valid:
            span.trace_id = trace_id = _getrandbits(128) or 1
            span.trace_hex = trace_id.to_bytes(16, "big").hex()
            span.trace_flags = flags = RANDOM_TRACE_ID | (SAMPLED if trace_id & _LOW_64 < self.bound else 0)
            span.trace_state = None
            span.parent_span_id = parent = None  # an invalid one is no parent
        elif parent.__class__ is ClientSpan:
            span.trace_id = parent.trace_id
            span.trace_hex = parent.trace_hex  # type: ignore[union-attr]
            span.trace_flags = flags = parent.trace_flags & _KEPT_FLAGS
            span.trace_state = parent.trace_state
            span.parent_span_id = parent.span_id
        else:
            span.trace_id = parent.trace_id
            span.trace_hex = parent.trace_id.to_bytes(16, "big").hex()
            span.trace_flags = flags = parent.trace_flags & _KEPT_FLAGS
            span.trace_state = parent.trace_state
            span.parent_span_id = parent.span_id
        span._parent_span = parent
        span.span_id = _getrandbits(64) or 1  # its hex form is made where it goes out (`span_hex`)
        span._sink = self
        span.name = name
        span.end_time = None
        span.status = _UNSET
        span.events = ()
        span.resource = self.resource
        span.instrumentation_scope = self.scope
        span._written = _NO_ATTRIBUTES  # a dict of its own from the first attribute set
        span._read_fields = None  # a layer's span names its reader once it has written its fields
        span.start_time = _time_ns() if flags & SAMPLED else 0  # an unsampled span has no times
        return span


class ClientSpan(ReadableSpan):
    """One CLIENT span written by one layer; on `end()`, when its trace is sampled, it is exported as is.

    Made by `SpanSink.start` (the base `__init__` is never called: the sink sets every field).
    Write attributes with `set_attribute` / `set_attributes`; `attributes` is a read-only
    view of them, as the SDK's. A sampled span waits in its processor's queue until a batch
    is full, so it holds no GC-tracked object it does not need: no view, no context (both
    are built per read, on the exporter's thread), and the call and attempt layers keep
    their attributes as its fields (`meshkit.observe.mesh_spans`).
    """

    # What exporters read, every span, on their thread, are slots of the names the SDK's
    # properties have (a slot read is a fifth of a property's: the SDK's are Python
    # functions, one frame per field per span) or class constants; the underscored names the
    # SDK's own methods read (`to_json`) are aliases below. address, attempt, breaker, ejected,
    # instance_id, method, path, port, reason, retries, service and status_code are the call
    # and attempt layers' attributes, as fields (meshkit.observe.mesh_spans).
    __slots__ = (
        "_parent_span",
        "_read_fields",
        "_sink",
        "_written",
        "address",
        "attempt",
        "breaker",
        "ejected",
        "end_time",
        "events",
        "instance_id",
        "instrumentation_scope",
        "method",
        "name",
        "parent_span_id",
        "path",
        "port",
        "reason",
        "resource",
        "retries",
        "service",
        "span_id",
        "start_time",
        "status",
        "status_code",
        "trace_flags",
        "trace_hex",
        "trace_id",
        "trace_state",
    )

    is_valid = True
    kind = _kind = SpanKind.CLIENT
    links = _links = ()
    _instrumentation_info = None
    _parent_span: SpanContext | ClientSpan | None
    _read_fields: Callable[[ClientSpan], dict[str, Any]] | None  # the fields' attributes, for a layer's span
    _sink: SpanSink
    _written: dict[str, Any]  # what set_attribute(s) wrote; _NO_ATTRIBUTES (never written to) until then
    end_time: int | None  # type: ignore[assignment]
    events: Sequence[Event]  # type: ignore[assignment]  # a tuple of its own once an exception is recorded
    instrumentation_scope: InstrumentationScope  # type: ignore[assignment]
    name: str  # type: ignore[assignment]
    resource: Resource  # type: ignore[assignment]
    parent_span_id: int | None
    span_id: int
    start_time: int  # type: ignore[assignment]
    status: Status  # type: ignore[assignment]
    trace_flags: int
    trace_hex: str
    trace_id: int
    trace_state: TraceState | None
    address: str | None
    attempt: int
    breaker: object  # its str() is the attribute
    ejected: int | tuple[object, ...] | None
    instance_id: str | None
    method: str
    path: str
    port: int | None
    reason: object  # its str() is the attribute
    retries: int | None
    service: str | None
    status_code: int | None

    # The fields under the names ReadableSpan's own methods read.
    _name = property(attrgetter("name"))
    _start_time = property(attrgetter("start_time"))
    _end_time = property(attrgetter("end_time"))
    _status = property(attrgetter("status"))
    _events = property(attrgetter("events"))
    _resource = property(attrgetter("resource"))
    _instrumentation_scope = property(attrgetter("instrumentation_scope"))
    _attributes = property(attrgetter("attributes"))

    @property
    def attributes(self) -> Mapping[str, Any]:  # type: ignore[override]
        """A read-only view of the attributes, built per read (as the SDK's property).

        Not kept: every GC-tracked object a queued span holds counts toward the collector's
        next young-generation pass (bench/gc_tracing.py). A layer's span builds the mapping
        from its fields here, on the exporter's thread, with what was set merged in last.
        """
        read_fields = self._read_fields
        return MappingProxyType(self._written if read_fields is None else read_fields(self))

    @property
    def sampled(self) -> bool:
        return bool(self.trace_flags & SAMPLED)

    @property
    def span_hex(self) -> str:
        return span_hex(self.span_id)

    @property
    def parent_span_hex(self) -> str | None:
        parent_id = self.parent_span_id
        return None if parent_id is None else span_hex(parent_id)

    def get_span_context(self) -> SpanContext:
        """The span's OpenTelemetry `SpanContext`, built per read, on the exporter's thread.

        Not kept: a queued span holds nothing more for the garbage collector to count (see
        `attributes`), and a context built at export and kept until the span is freed would
        push the count of a full batch past the collector's young-generation threshold. It
        is SpanContext.__new__'s own tuple without its validation: the ids are known valid
        (non-zero, in range) and trace_state is never None; tests/observe/test_spans.py checks
        it equals SpanContext(...) field for field.
        """
        return tuple.__new__(
            SpanContext,
            (
                self.trace_id,
                self.span_id,
                False,
                _TRACE_FLAGS[self.trace_flags],
                self.trace_state or _NO_STATE,
                True,
            ),
        )

    # ReadableSpan's fields for its context and its parent's, read by exporters and `to_json`.
    context = _context = property(get_span_context)  # type: ignore[assignment]

    @property
    def _parent(self) -> SpanContext | None:  # type: ignore[override]
        parent = self._parent_span
        if parent.__class__ is ClientSpan:
            return parent.get_span_context()  # type: ignore[union-attr]
        return parent  # type: ignore[return-value]  # a remote SpanContext, or None

    # The same read in one frame, not two (the SDK's `parent` property reads `_parent`).
    parent = _parent  # type: ignore[assignment]

    # A ClientSpan never drops anything: what an OTLP exporter asks, as constants, not properties.
    dropped_attributes = 0  # type: ignore[assignment]
    dropped_events = 0  # type: ignore[assignment]
    dropped_links = 0  # type: ignore[assignment]

    def set_attribute(self, key: str, value: Any) -> None:
        written = self._written
        if written is _NO_ATTRIBUTES:
            self._written = {key: value}
        else:
            written[key] = value

    def set_attributes(self, attributes: dict[str, Any]) -> None:
        """Add `attributes`; the span keeps the dict itself (no copy) when it has none yet."""
        if self._written is _NO_ATTRIBUTES:
            self._written = attributes
        else:
            self._written.update(attributes)

    def set_error(self, description: str | None = None) -> None:
        self.status = _ERROR if description is None else Status(StatusCode.ERROR, description)

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
        self.events = (*self.events, event)

    def end(self) -> None:
        if not self.trace_flags & SAMPLED:
            return
        self.end_time = _time_ns()
        sink = self._sink
        queue = sink.queue
        if queue is None:
            sink.on_end(self)
            return
        queue.append(self)  # a batching processor's queue (`SpanLane`): no call per span
        if len(queue) >= sink.lane.wake_at:  # type: ignore[union-attr]
            sink.lane.overflow()  # type: ignore[union-attr]
