"""Client-side tracing with OpenTelemetry: one span per logical call and one per attempt.

`Tracer` is meshkit's facade over an OpenTelemetry SDK `TracerProvider`: it names the
service (resource `service.name`), samples at the root with `ParentBased(TraceIdRatioBased)`
(a child follows its parent's decision, so a trace is kept or dropped whole), owns the
exporters and the header propagator. The seed's names map onto OpenTelemetry's types:
`Span` is `opentelemetry.trace.Span` and `SpanContext` is `opentelemetry.trace.SpanContext`.

`CallSpanLayer` sits outermost: its CLIENT span covers the whole call, retries included,
and becomes the child of a server span running in the same task (contextvars).
`AttemptSpanLayer` sits just above the transport: one CLIENT span per attempt, child of
the call span, carrying the mesh's decisions that other layers left in `request.context`
(keys below), and the propagation headers of this attempt go out on a copy of the headers.
Errors are recorded on both; a 5xx is an error, a 4xx is the caller's (as `meshkit.outcome`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind, Status, StatusCode

from meshkit.observe.propagation import DEFAULT_PROPAGATOR, MeshPropagator
from meshkit.service import Service
from meshkit.types import Request, Response, validate_service_name

Span = trace.Span  # the seed's Span: an OpenTelemetry span
SpanContext = trace.SpanContext  # the seed's SpanContext: trace id, span id, flags, tracestate

# request.context keys: written here, or read here when another layer wrote them.
TRACE_ID_KEY = "trace_id"  # written by CallSpanLayer: the call's 32-hex trace id (the seed's field)
ATTEMPTS_KEY = "meshkit.attempts"  # written by AttemptSpanLayer: attempts started so far
BALANCER_REASON_KEY = "balancer.reason"  # read: why the balancer chose this instance
BREAKER_STATE_KEY = "breaker.state"  # read: the chosen instance's breaker state
EJECTED_KEY = "outlier.ejected"  # read: instance ids (or a count) outlier detection has ejected

_ERROR = Status(StatusCode.ERROR)
_NAME_CACHE_LIMIT = 1024


class Tracer:
    """Owns an SDK `TracerProvider` with a parent-based ratio sampler, its exporters and the propagator."""

    __slots__ = ("propagator", "provider", "sample_ratio", "service_name", "tracer")

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
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": service_name}),
            sampler=ParentBased(TraceIdRatioBased(self.sample_ratio)),
        )
        for exporter in exporters:  # batched: export runs on a background thread, off the data path
            self.provider.add_span_processor(BatchSpanProcessor(exporter))
        for processor in processors:
            self.provider.add_span_processor(processor)
        self.tracer: trace.Tracer = self.provider.get_tracer("meshkit")

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


def _record_status(span: Span, status: int, extra: dict[str, Any] | None = None) -> None:
    attributes: dict[str, Any] = {"http.response.status_code": status}
    if extra:
        attributes.update(extra)
    if status >= 500:
        attributes["error.type"] = str(status)
        span.set_status(_ERROR)
    span.set_attributes(attributes)


class CallSpanLayer:
    """One CLIENT span per logical call, retries included; writes the trace id to request.context."""

    __slots__ = ("_extract", "_names", "_propagator", "_tracer", "inner")

    def __init__(self, inner: Service, *, tracer: Tracer, extract_from_headers: bool = False) -> None:
        self.inner = inner
        self._tracer = tracer.tracer
        self._propagator = tracer.propagator
        self._extract = extract_from_headers  # /call and the sidecar continue a trace the caller sent
        self._names: dict[str, str] = {}

    def _name(self, service: str) -> str:
        name = self._names.get(service)
        if name is None:
            name = f"call {service}"
            if len(self._names) < _NAME_CACHE_LIMIT:
                self._names[service] = name
        return name

    async def __call__(self, request: Request) -> Response:
        parent: Context | None = None
        if self._extract:
            found = self._propagator.extract_span_context(request.headers)
            if found is not None:
                parent = trace.set_span_in_context(trace.NonRecordingSpan(found))
        attributes = {
            "meshkit.service": request.service,
            "http.request.method": request.method,
            "url.path": request.path,
        }
        span = self._tracer.start_span(
            self._name(request.service),
            context=parent,
            kind=SpanKind.CLIENT,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        )
        ctx = request.context
        ctx[TRACE_ID_KEY] = f"{span.get_span_context().trace_id:032x}"
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        try:
            response = await self.inner(request)
            if span.is_recording():
                _record_status(span, response.status, {"meshkit.retries": _retries(request)})
            return response
        except BaseException as exc:
            if span.is_recording():
                span.set_attribute("meshkit.retries", _retries(request))
            record_error(span, exc)
            raise
        finally:
            otel_context.detach(token)
            span.end()


def _retries(request: Request) -> int:
    attempts = request.context.get(ATTEMPTS_KEY)
    return request.attempt if attempts is None else max(attempts - 1, 0)


class AttemptSpanLayer:
    """One CLIENT span per attempt, child of the call span; sends this span's trace headers."""

    __slots__ = ("_names", "_propagator", "_tracer", "inner")

    def __init__(self, inner: Service, *, tracer: Tracer) -> None:
        self.inner = inner
        self._tracer = tracer.tracer
        self._propagator = tracer.propagator
        self._names: dict[str, str] = {}

    def _name(self, service: str) -> str:
        name = self._names.get(service)
        if name is None:
            name = f"attempt {service}"
            if len(self._names) < _NAME_CACHE_LIMIT:
                self._names[service] = name
        return name

    async def __call__(self, request: Request) -> Response:
        ctx = request.context
        attempt = ctx.get(ATTEMPTS_KEY, 0)
        ctx[ATTEMPTS_KEY] = attempt + 1
        span = self._tracer.start_span(
            self._name(request.service),
            kind=SpanKind.CLIENT,
            attributes=_attempt_attributes(request, attempt),
            record_exception=False,
            set_status_on_exception=False,
        )
        original = request.headers
        headers = original.copy()  # the caller's headers stay as they were
        self._propagator.inject_span(headers, span)
        request.headers = headers
        try:
            response = await self.inner(request)
            if span.is_recording():
                _record_status(span, response.status)
            return response
        except BaseException as exc:
            record_error(span, exc)
            raise
        finally:
            request.headers = original
            span.end()


def _attempt_attributes(request: Request, attempt: int) -> dict[str, Any]:
    attributes: dict[str, Any] = {"meshkit.attempt": attempt, "http.request.method": request.method}
    instance = request.instance
    if instance is not None:
        attributes["meshkit.instance.id"] = instance.service_id
        attributes["server.address"] = instance.address
        attributes["server.port"] = instance.port
    ctx = request.context
    if (reason := ctx.get(BALANCER_REASON_KEY)) is not None:
        attributes["meshkit.balancer.reason"] = str(reason)
    if (state := ctx.get(BREAKER_STATE_KEY)) is not None:
        attributes["meshkit.breaker.state"] = str(state)
    if (ejected := ctx.get(EJECTED_KEY)) is not None:
        value = ejected if isinstance(ejected, int) else [str(i) for i in ejected]
        attributes["meshkit.outlier.ejected"] = value
    return attributes
