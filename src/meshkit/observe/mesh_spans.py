"""The call and attempt layers' span attributes: written as the span's fields, read as a mapping.

A sampled span waits in the batching processor's queue until its batch is full: it has
outlived its request, and every GC-tracked object that does so counts toward the
collector's next young-generation pass. With its attributes in a dict of their own a span
was two such objects (three with the read-only view), and at 32 calls in flight those
survivors ran a pass every ~100 calls, each walking and promoting the in-flight calls'
objects, which brought full collections (bench/gc_tracing.py). As the span's fields
(`ClientSpan`'s slots) they count for nothing: `record_call` and `record_attempt` write
them on the data path, and the mapping an exporter reads is built by `call_attributes` or
`attempt_attributes` when it reads it, on its thread, string forms included. What a layer
adds besides (an exception's type, a cancelled call's mark) goes through `set_attribute`
into the span's own dict, merged in last. One span class for both layers, not one each:
CPython 3.11 specialises attribute access per type, and the code every span goes through
(start, end, the exporters' reads) would see two.
"""

from __future__ import annotations

from typing import Any

from meshkit.observe.spans import ClientSpan
from meshkit.types import Request

# request.context keys the attempt reads, written by the layers above it
BALANCER_REASON_KEY = "balancer.reason"  # why the balancer chose this instance
BREAKER_STATE_KEY = "breaker.state"  # the chosen instance's breaker state
EJECTED_KEY = "outlier.ejected"  # instance ids (or a count) outlier detection has ejected
_IMMUTABLE = frozenset({int, tuple, type(None)})  # what EJECTED_KEY holds, kept without a copy


def record_call(span: ClientSpan, request: Request) -> None:
    """A sampled call span's fields at its start; `retries` and `status_code` are written at its end."""
    span.service, span.method, span.path = request.service, request.method, request.path
    span.retries = span.status_code = None
    span._read_fields = call_attributes


def call_attributes(span: ClientSpan) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "meshkit.service": span.service,
        "http.request.method": span.method,
        "url.path": span.path,
    }
    if (retries := span.retries) is not None:
        attributes["meshkit.retries"] = retries
    return _with_outcome(attributes, span)


def record_attempt(span: ClientSpan, request: Request, attempt: int) -> None:
    """A sampled attempt span's fields: what the request and the layers above it decided."""
    span.service, span.attempt, span.method = request.service, attempt, request.method
    instance = request.instance
    if instance is None:
        span.instance_id = span.address = span.port = None
    else:
        span.instance_id, span.address, span.port = instance.service_id, instance.address, instance.port
    ctx = request.context
    span.reason = ctx.get(BALANCER_REASON_KEY)
    span.breaker = ctx.get(BREAKER_STATE_KEY)
    ejected: Any = ctx.get(EJECTED_KEY)  # an int, a tuple of ids or None; another iterable is copied
    if ejected.__class__ not in _IMMUTABLE:
        ejected = tuple(ejected)  # as it was at the attempt
    span.ejected = ejected
    span.status_code = None
    span._read_fields = attempt_attributes


def attempt_attributes(span: ClientSpan) -> dict[str, Any]:
    # meshkit.service names the callee even when it sends no server span back (untraced, or
    # the attempt failed before it answered): the dependency graph must not fall back to an address.
    attributes: dict[str, Any] = {
        "meshkit.service": span.service,
        "meshkit.attempt": span.attempt,
        "http.request.method": span.method,
    }
    if (instance_id := span.instance_id) is not None:
        attributes["meshkit.instance.id"] = instance_id
        attributes["server.address"] = span.address
        attributes["server.port"] = span.port
    if (reason := span.reason) is not None:
        attributes["meshkit.balancer.reason"] = reason if reason.__class__ is str else str(reason)
    if (state := span.breaker) is not None:
        attributes["meshkit.breaker.state"] = state if state.__class__ is str else str(state)
    if (ejected := span.ejected) is not None:
        attributes["meshkit.outlier.ejected"] = (
            ejected if isinstance(ejected, int) else tuple(str(i) for i in ejected)
        )
    return _with_outcome(attributes, span)


def _with_outcome(attributes: dict[str, Any], span: ClientSpan) -> dict[str, Any]:
    """`attributes` with the answer's status (a 5xx is the error's type) and what was set besides."""
    if (status := span.status_code) is not None:
        attributes["http.response.status_code"] = status
        if status >= 500:
            attributes["error.type"] = str(status)
    if written := span._written:
        attributes.update(written)
    return attributes
