"""The `/call` client: the ordinary client stack, hardened for forwarding other people's calls.

`/call` makes the control plane a forwarding proxy, so its stack gets what a proxy needs
(OWASP SSRF Prevention Cheat Sheet) on top of the usual layers: the transport (meshkit's
`H1Transport`, a fraction of aiohttp's CPU per call) resolves the instance itself and dials
only an IP `refuse_unsafe_ip` lets through (no link-local or metadata IP, checked at
connect time, so DNS rebinding is refused too), and caps the response it reads; `SsrfGuardLayer` sits just above the transport, where the
chosen instance is known, to normalise the path, re-check the address and cap the body.
Tracing continues the caller's trace (`extract_from_headers`) and every call is counted
once by `MetricsLayer`, outermost. The caller's headers are filtered before they enter.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import partial
from typing import Any

from multidict import CIMultiDict

from meshkit.client import MeshClient
from meshkit.observe.metrics import MeshMetrics, MetricsLayer
from meshkit.observe.tracing import AttemptSpanLayer, CallSpanLayer, Tracer
from meshkit.plane.headers import forwardable_headers
from meshkit.plane.ssrf import SsrfGuardLayer, normalize_path, refuse_unsafe_ip
from meshkit.stack import Layer, Stack
from meshkit.transport.h1 import H1Transport

DEFAULT_MAX_BODY_BYTES = 1 << 20  # what /call forwards
DEFAULT_MAX_RESPONSE_BYTES = 8 << 20  # what /call reads back
CALL_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
TRACE_HEADERS = (
    "traceparent",
    "tracestate",
    "b3",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "x-trace-id",
    "x-span-id",
    "x-parent-span-id",
    "x-trace-flags",
)
_METHOD_RE = re.compile(r"^[A-Za-z]{1,16}$")


def guarded_transport(max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES) -> H1Transport:
    """The /call transport: every dialled IP judged by `refuse_unsafe_ip`, the answer capped."""
    return H1Transport(max_response_bytes=max_response_bytes, connect_guard=refuse_unsafe_ip)


def _put(stack: Stack, role: str, layer: Layer, description: str, *, outside: str) -> None:
    """Replace `role` when the stack has it, else add it just outside `outside`."""
    if role in stack:
        stack.replace(role, layer, description)
    else:
        stack.insert_before(outside, role, layer, description)


def harden(client: MeshClient, *, tracer: Tracer, metrics: MeshMetrics, max_body_bytes: int) -> None:
    """Give the client's stack the proxy's layers (see the module docstring)."""
    stack = client.stack
    guard = partial(SsrfGuardLayer, max_body_bytes=max_body_bytes)
    if "ssrf" not in stack:
        stack.insert_after("load", "ssrf", guard, "SSRF guard: path, address and body checks")
    _put(
        stack,
        "trace-attempt",
        partial(AttemptSpanLayer, tracer=tracer),
        "one span per attempt",
        outside="load",
    )
    for role in ("metrics", "trace"):  # re-pushed below so that metrics stays outermost
        if role in stack:
            stack.remove(role)
    # trace: continues the trace the caller sent, covers retries and interceptors.
    stack.push("trace", partial(CallSpanLayer, tracer=tracer, extract_from_headers=True), "one span per call")
    # metrics: outermost, one observation per call with its final status and full time.
    stack.push(
        "metrics", partial(MetricsLayer, metrics=metrics, clock=client.parts.clock), "Prometheus metrics"
    )


def check_method(method: str) -> str:
    upper = method.upper() if isinstance(method, str) and _METHOD_RE.match(method) else None
    if upper not in CALL_METHODS:
        raise ValueError(f"method: must be one of {', '.join(sorted(CALL_METHODS))}, got {method!r:.40}")
    return upper


def outgoing_headers(
    body_headers: Mapping[str, str],
    request_headers: Mapping[str, str],
    *,
    caller_token: str | None,
) -> dict[str, str]:
    """The headers to forward: the body's, filtered; plus the HTTP request's trace context when the
    body carries none, so a caller's trace continues either way (the attempt layer rewrites them)."""
    if not body_headers:  # the usual /call: nothing to validate, the trace context from the request
        if not request_headers:  # the fast lane's trace headers, when the caller sent none
            return {}
        found = ((name, request_headers.get(name)) for name in TRACE_HEADERS)
        return {name: value for name, value in found if value is not None and len(value) <= 512}
    kept: CIMultiDict[str] = forwardable_headers(body_headers, mesh_token=caller_token)
    if not any(name in kept for name in TRACE_HEADERS):
        for name in TRACE_HEADERS:
            value = request_headers.get(name)
            if value is not None and len(value) <= 512:
                kept[name] = value
    return dict(kept)


def check_path(path: str) -> str:
    """The path, normalised once; `UnsafePath` (400) for anything that could reach elsewhere."""
    return normalize_path(path)


def text(value: str) -> str:
    """A string safe to put in a JSON response: lone surrogates (undecodable header bytes) replaced."""
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        pass
    try:  # the bytes the transport could not decode, escaped as U+DC80-U+DCFF
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # another lone surrogate (no escaped byte): replaced as well
        return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def safe_result(result: dict[str, Any]) -> dict[str, Any]:
    """The seed's call result with header names and values made JSON-safe."""
    headers = result.get("headers") or {}
    try:  # every name and value at once: UTF-8 refuses a lone surrogate wherever it is
        "".join(headers).encode("utf-8")
        "".join(headers.values()).encode("utf-8")
        result["headers"] = dict(headers)
    except UnicodeEncodeError:
        result["headers"] = {text(k): text(v) for k, v in headers.items()}
    body = result.get("body")
    if isinstance(body, str):
        result["body"] = text(body)
    return result
