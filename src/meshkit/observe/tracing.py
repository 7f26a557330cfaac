"""Client-side tracing with OpenTelemetry: one span per logical call and one per attempt.

`Tracer` is meshkit's facade over an OpenTelemetry SDK `TracerProvider`: it names the
service (resource `service.name`), samples at the root with `ParentBased(TraceIdRatioBased)`
(a child follows its parent's decision, so a trace is kept or dropped whole), owns the
exporters and the header propagator. The seed's names map onto OpenTelemetry's types:
`Span` is `opentelemetry.trace.Span` and `SpanContext` is `opentelemetry.trace.SpanContext`.

`CallSpanLayer` sits outermost: its CLIENT span covers the whole call, retries included,
and is the child of the span current in the task (a server span, via contextvars).
`AttemptSpanLayer` sits just above the transport: one CLIENT span per attempt, child of
the call span, carrying the mesh's decisions that other layers left in `request.context`
(keys below and in mesh_spans), and the propagation headers of this attempt go out on a
copy of the headers. Errors are recorded on both; a 5xx is an error, a 4xx is the caller's
(as `meshkit.outcome`).
Both layers make `ClientSpan`s (see `meshkit.observe.spans`: the SDK's model and exporters
at a fraction of its per-span cost), whose attributes are fields until an exporter reads
them (`meshkit.observe.mesh_spans`); the call span reaches the attempt layer through
`request.context[CALL_SPAN_KEY]` and is not made the current OpenTelemetry span.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanKind, Status, StatusCode

from meshkit.observe.batch import BatchingSpanProcessor
from meshkit.observe.mesh_spans import BALANCER_REASON_KEY as BALANCER_REASON_KEY
from meshkit.observe.mesh_spans import BREAKER_STATE_KEY as BREAKER_STATE_KEY
from meshkit.observe.mesh_spans import EJECTED_KEY as EJECTED_KEY
from meshkit.observe.mesh_spans import record_attempt, record_call
from meshkit.observe.propagation import (
    DEFAULT_PROPAGATOR,
    MeshPropagator,
    current_context,
    trace_hex,
)
from meshkit.observe.spans import RANDOM_TRACE_ID, SAMPLED, ClientSpan, SpanPipeline, SpanSink
from meshkit.service import Service
from meshkit.types import Request, Response, validate_service_name

Span = trace.Span  # the seed's Span: an OpenTelemetry span
SpanContext = trace.SpanContext  # the seed's SpanContext: trace id, span id, flags, tracestate

# request.context keys: written here, or read here when another layer wrote them.
TRACE_ID_KEY = "trace_id"  # written by CallSpanLayer: the call's 32-hex trace id (the seed's field)
CALL_SPAN_KEY = "meshkit.call_span"  # written by CallSpanLayer: its ClientSpan, the attempts' parent
ATTEMPTS_KEY = "meshkit.attempts"  # written by AttemptSpanLayer: attempts started so far
# Read (by the attempt's span): BALANCER_REASON_KEY, BREAKER_STATE_KEY, EJECTED_KEY, from mesh_spans.

_NAME_CACHE_LIMIT = 1024
_PROPAGATED_FLAGS = SAMPLED | RANDOM_TRACE_ID  # the parent's flags a child keeps (as SpanSink.start)
_getrandbits = random.getrandbits


class Tracer:
    """Owns an SDK `TracerProvider` with a parent-based ratio sampler, its exporters and the propagator."""

    __slots__ = ("propagator", "provider", "sample_ratio", "service_name", "sink", "tracer")

    def __init__(
        self,
        service_name: str,
        *,
        sample_ratio: float = 1.0,
        exporters: Iterable[SpanExporter] = (),
        processors: Iterable[SpanProcessor] = (),
        propagator: MeshPropagator = DEFAULT_PROPAGATOR,
    ) -> None:
        validate_service_name(service_name)
        valid = isinstance(sample_ratio, int | float) and not isinstance(sample_ratio, bool)
        if not valid or not 0.0 <= sample_ratio <= 1.0:
            raise ValueError(f"sample_ratio: must be a number in [0, 1], got {sample_ratio!r}")
        self.service_name = service_name
        self.sample_ratio = float(sample_ratio)
        self.propagator = propagator
        pipeline = SpanPipeline()
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": service_name}),
            sampler=ParentBased(TraceIdRatioBased(self.sample_ratio)),
            active_span_processor=pipeline,
        )
        for exporter in exporters:  # batched: export runs on a background thread, off the data path
            self.provider.add_span_processor(BatchingSpanProcessor(exporter))
        for processor in processors:
            self.provider.add_span_processor(processor)
        self.tracer: trace.Tracer = self.provider.get_tracer("meshkit")
        scope = InstrumentationScope("meshkit")
        self.sink = SpanSink(pipeline, self.provider.resource, scope, self.sample_ratio)  # client spans

    def start_span(
        self, name: str, *, kind: SpanKind = SpanKind.INTERNAL, context: Context | None = None
    ) -> Span:
        """A span that is not made current (end it with `span.end()`)."""
        return self.tracer.start_span(name, context=context, kind=kind)

    def inject(self, headers: Any, context: Context | None = None) -> None:
        """Write the current (or `context`'s) span and baggage into `headers`."""
        self.propagator.inject(headers, context)

    def extract(self, headers: Any) -> Context:
        """The caller's trace context from `headers` (a new root when none is valid)."""
        return self.propagator.extract(headers)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.provider.force_flush(timeout_millis)

    def shutdown(self) -> None:
        self.provider.shutdown()


def record_error(span: Span, exc: BaseException) -> None:
    """Mark `span` failed by `exc`; a cancellation (a lost hedge, a caller gone) is noted, not an error."""
    if not span.is_recording():
        return
    if isinstance(exc, asyncio.CancelledError):
        span.set_attribute("meshkit.cancelled", True)
        return
    span.record_exception(exc)
    span.set_attribute("error.type", type(exc).__qualname__)
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))


class CallSpanLayer:
    """One CLIENT span per logical call, retries included; writes the trace id to request.context."""

    __slots__ = ("_extract", "_names", "_propagator", "_start", "inner")

    def __init__(self, inner: Service, *, tracer: Tracer, extract_from_headers: bool = False) -> None:
        self.inner = inner
        self._start = tracer.sink.start
        self._propagator = tracer.propagator
        self._extract = extract_from_headers  # /call and the sidecar continue a trace the caller sent
        self._names: dict[str, str] = {}

    async def __call__(self, request: Request) -> Response:
        parent = self._propagator.extract_span_context(request.headers) if self._extract else None
        if parent is None and (current := current_context()):  # a server span, when there is one
            parent = trace.get_current_span(current).get_span_context()
        service = request.service
        span = self._start(self._names.get(service) or _name(self._names, "call ", service), parent)
        ctx = request.context
        ctx[TRACE_ID_KEY] = span.trace_hex
        ctx[CALL_SPAN_KEY] = span
        if not span.trace_flags & SAMPLED:
            return await self.inner(request)  # nothing to record: the attempts only send its ids
        record_call(span, request)
        try:
            response = await self.inner(request)
        except BaseException as exc:
            span.retries = _retries(request)
            _record_failure(span, exc)
            span.end()
            raise
        attempts = ctx.get(ATTEMPTS_KEY)  # as _retries(), inline
        span.retries = request.attempt if attempts is None else max(attempts - 1, 0)
        status = span.status_code = response.status
        if status >= 500:
            span.set_error()  # error.type is the status (mesh_spans.call_attributes)
        span.end()
        return response


class AttemptSpanLayer:
    """One CLIENT span per attempt, child of the call span; sends this span's trace headers.

    An unsampled attempt makes no span: it only sends a new span id under its parent's.
    """

    __slots__ = ("_inject", "_names", "_start", "inner")

    def __init__(self, inner: Service, *, tracer: Tracer) -> None:
        self.inner = inner
        self._start = tracer.sink.start
        self._inject = tracer.propagator.with_trace_headers
        self._names: dict[str, str] = {}

    async def __call__(self, request: Request) -> Response:
        ctx = request.context
        attempt = ctx.get(ATTEMPTS_KEY, 0)
        ctx[ATTEMPTS_KEY] = attempt + 1
        parent = ctx.get(CALL_SPAN_KEY)
        if parent is None and (current := current_context()):
            parent = trace.get_current_span(current).get_span_context()
        original = request.headers  # the trace headers go out on a copy: the caller's stay as they were
        # span ids' hex below are propagation.span_hex written inline: a call saved per attempt
        if parent is not None and parent.is_valid and not parent.trace_flags & SAMPLED:
            request.headers = self._inject(
                original,
                parent.trace_hex if isinstance(parent, ClientSpan) else trace_hex(parent.trace_id),
                (_getrandbits(64) or 1).to_bytes(8, "big").hex(),
                parent.trace_flags & _PROPAGATED_FLAGS,
                parent.span_id,
                parent.trace_state,
            )
            try:
                return await self.inner(request)
            finally:
                request.headers = original
        service = request.service
        span = self._start(self._names.get(service) or _name(self._names, "attempt ", service), parent)
        sampled = span.trace_flags & SAMPLED  # a sampled parent's child is; a root by its own trace id
        if sampled:
            record_attempt(span, request, attempt)
        request.headers = self._inject(
            original,
            span.trace_hex,
            span.span_id.to_bytes(8, "big").hex(),
            span.trace_flags,
            span.parent_span_id,
            span.trace_state,
        )
        try:
            response = await self.inner(request)
        except BaseException as exc:
            if sampled:
                _record_failure(span, exc)
                span.end()
            raise
        finally:
            request.headers = original
        if sampled:
            status = span.status_code = response.status
            if status >= 500:
                span.set_error()  # error.type is the status (mesh_spans.attempt_attributes)
            span.end()
        return response


def _name(cache: dict[str, str], prefix: str, service: str) -> str:
    name = cache.get(service)
    if name is None:
        name = prefix + service
        if len(cache) < _NAME_CACHE_LIMIT:
            cache[service] = name
    return name


def _retries(request: Request) -> int:
    attempts = request.context.get(ATTEMPTS_KEY)
    return request.attempt if attempts is None else max(attempts - 1, 0)


def _record_failure(span: ClientSpan, exc: BaseException) -> None:
    if isinstance(exc, asyncio.CancelledError):  # a lost hedge, a caller gone: noted, not an error
        span.set_attribute("meshkit.cancelled", True)
        return
    span.record_exception(exc)
    span.set_attribute("error.type", type(exc).__qualname__)
    span.set_error(f"{type(exc).__name__}: {exc}")
