"""Server spans in one line, for aiohttp and for FastAPI/Starlette (pure ASGI) services.

    app.middlewares.append(aiohttp_tracing_middleware(tracer))      # aiohttp
    app.add_middleware(TracingMiddleware, tracer=tracer)            # FastAPI / Starlette

Each request gets a SERVER span named "{METHOD} {route}" (the route template when the
router matched one, else the path), the child of whatever trace context the caller sent
in any format `MeshPropagator` reads; a request without one (or with a malformed one)
starts a new trace. The span is current while the handler runs, so a meshkit client
call made inside it joins the same trace. 5xx responses and exceptions are errors; a 4xx
is the client's (OpenTelemetry HTTP semantic conventions for SERVER spans).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware
from multidict import CIMultiDict
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind

from meshkit.observe.tracing import Span, Tracer, record_error

AiohttpHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _start(tracer: Tracer, name: str, parent: Context, attributes: dict[str, Any]) -> tuple[Span, object]:
    span = tracer.tracer.start_span(
        name,
        context=parent,
        kind=SpanKind.SERVER,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    )
    return span, otel_context.attach(trace.set_span_in_context(span, parent))


def _finish(span: Span, token: object, status: int | None) -> None:
    if status is not None and span.is_recording():
        span.set_attribute("http.response.status_code", status)
        if status >= 500:
            span.set_attribute("error.type", str(status))
            span.set_status(trace.Status(trace.StatusCode.ERROR))
    otel_context.detach(token)  # type: ignore[arg-type]
    span.end()


def aiohttp_tracing_middleware(tracer: Tracer) -> Middleware:
    """An aiohttp middleware: `app.middlewares.append(aiohttp_tracing_middleware(tracer))`."""

    @web.middleware
    async def tracing(request: web.Request, handler: AiohttpHandler) -> web.StreamResponse:
        parent = tracer.propagator.extract(request.headers)
        route = getattr(request.match_info.route.resource, "canonical", None)
        attributes = {"http.request.method": request.method, "url.path": request.path}
        if route is not None:
            attributes["http.route"] = route
        span, token = _start(tracer, f"{request.method} {route or request.path}", parent, attributes)
        status: int | None = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:  # aiohttp answers these; 4xx is no server error
            status = exc.status
            raise
        except BaseException as exc:
            record_error(span, exc)
            status = None if isinstance(exc, asyncio.CancelledError) else 500  # cancelled: client left
            raise
        finally:
            _finish(span, token, status)

    return tracing


class TracingMiddleware:
    """Pure ASGI middleware: `app.add_middleware(TracingMiddleware, tracer=tracer)`."""

    def __init__(self, app: ASGIApp, *, tracer: Tracer) -> None:
        self.app = app
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = CIMultiDict((k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"])
        parent = self.tracer.propagator.extract(headers)
        method, path = scope["method"], scope["path"]
        attributes = {"http.request.method": method, "url.path": path}
        span, token = _start(self.tracer, f"{method} {path}", parent, attributes)
        status: list[int] = []

        async def send_with_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(int(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        except BaseException as exc:
            record_error(span, exc)
            if not status and not isinstance(exc, asyncio.CancelledError):
                status.append(500)  # Starlette's outer error middleware answers 500
            raise
        finally:
            template = getattr(scope.get("route"), "path", None)
            if template is not None and span.is_recording():
                route = f"{scope.get('root_path', '')}{template}"
                span.set_attribute("http.route", route)
                span.update_name(f"{method} {route}")
            _finish(span, token, status[0] if status else None)
