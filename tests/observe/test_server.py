"""Server middleware on real aiohttp and FastAPI servers on 127.0.0.1, continuing the client's trace."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web
from fastapi import FastAPI, HTTPException
from multidict import CIMultiDict
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from meshkit.observe.propagation import MeshPropagator
from meshkit.observe.server import TracingMiddleware, aiohttp_tracing_middleware
from meshkit.observe.tracing import TRACE_ID_KEY, AttemptSpanLayer, CallSpanLayer, Tracer
from meshkit.service import Service
from meshkit.stack import Stack
from meshkit.transport.aiohttp import AiohttpTransport
from meshkit.types import Request, Response, ServiceInstance
from tests.conftest import StartUpstream
from tests.support.asgi import uvicorn_server
from tests.support.servers import free_port


class PinLayer:
    """Stands in for the balancer: always the one instance under test."""

    def __init__(self, inner: Service, *, instance: ServiceInstance) -> None:
        self.inner, self.instance = inner, instance

    async def __call__(self, request: Request) -> Response:
        request.instance = self.instance
        return await self.inner(request)


def client(tracer: Tracer, name: str, port: int, transport: AiohttpTransport) -> Service:
    instance = ServiceInstance(f"{name}-1", name, "127.0.0.1", port)
    stack = Stack()
    stack.push("attempt-span", functools.partial(AttemptSpanLayer, tracer=tracer))
    stack.push("balancer", functools.partial(PinLayer, instance=instance))
    stack.push("call-span", functools.partial(CallSpanLayer, tracer=tracer))
    return stack.build(transport)


def traced(name: str) -> tuple[Tracer, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    return Tracer(name, processors=[SimpleSpanProcessor(exporter)]), exporter


def only(spans: tuple[ReadableSpan, ...], kind: SpanKind) -> list[ReadableSpan]:
    return [s for s in spans if s.kind is kind]


@asynccontextmanager
async def aiohttp_app(app: web.Application) -> AsyncIterator[int]:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port
    finally:
        await runner.cleanup()


@asynccontextmanager
async def uvicorn_app(app: FastAPI) -> AsyncIterator[int]:
    async with uvicorn_server(app) as port:
        yield port


async def test_aiohttp_server_span_continues_the_callers_trace_into_its_own_calls(
    upstreams: StartUpstream,
) -> None:
    stock_headers: list[dict[str, str]] = []

    async def stock(request: web.Request) -> web.StreamResponse:
        stock_headers.append(dict(request.headers))
        return web.Response(text="12")

    stock_up = await upstreams("stock", stock)
    orders_tracer, orders_spans = traced("orders")
    caller_tracer, caller_spans = traced("caller")
    transport = AiohttpTransport()
    to_stock = client(orders_tracer, "stock", stock_up.port, transport)

    async def order(request: web.Request) -> web.StreamResponse:
        answer = await to_stock(Request("GET", "/count", service="stock"))
        return web.Response(text=answer.text())

    app = web.Application()
    app.middlewares.append(aiohttp_tracing_middleware(orders_tracer))  # the one line
    app.router.add_get("/orders/{id}", order)
    try:
        async with aiohttp_app(app) as port:
            request = Request("GET", "/orders/7", service="orders")
            response = await client(caller_tracer, "orders", port, transport)(request)
    finally:
        await transport.aclose()
    assert response.status == 200 and response.text() == "12"

    [call] = [s for s in caller_spans.get_finished_spans() if s.name == "call orders"]
    [attempt] = [s for s in caller_spans.get_finished_spans() if s.name == "attempt orders"]
    [server] = only(orders_spans.get_finished_spans(), SpanKind.SERVER)
    [inner_call] = [s for s in orders_spans.get_finished_spans() if s.name == "call stock"]
    [inner_attempt] = [s for s in orders_spans.get_finished_spans() if s.name == "attempt stock"]

    trace_id = call.context.trace_id
    assert f"{trace_id:032x}" == request.context[TRACE_ID_KEY]
    assert {s.context.trace_id for s in (attempt, server, inner_call, inner_attempt)} == {trace_id}
    assert server.name == "GET /orders/{id}"
    assert server.parent is not None and server.parent.span_id == attempt.context.span_id
    assert server.parent.is_remote
    assert inner_call.parent is not None and inner_call.parent.span_id == server.context.span_id
    assert server.resource.attributes["service.name"] == "orders"
    attrs = dict(server.attributes or {})
    assert (attrs["http.route"], attrs["url.path"], attrs["http.response.status_code"]) == (
        "/orders/{id}",
        "/orders/7",
        200,
    )
    sent = stock_headers[0]
    expected = [f"{trace_id:032x}", f"{inner_attempt.context.span_id:016x}"]
    assert sent["traceparent"].split("-")[1:3] == expected


async def test_aiohttp_errors_and_client_errors() -> None:
    tracer, spans = traced("orders")

    async def fail(request: web.Request) -> web.StreamResponse:
        raise RuntimeError("broken")

    async def missing(request: web.Request) -> web.StreamResponse:
        raise web.HTTPNotFound()

    async def unavailable(request: web.Request) -> web.StreamResponse:
        return web.Response(status=503)

    app = web.Application(middlewares=[aiohttp_tracing_middleware(tracer)])
    app.router.add_get("/fail", fail)
    app.router.add_get("/missing", missing)
    app.router.add_get("/unavailable", unavailable)
    transport = AiohttpTransport()
    try:
        async with aiohttp_app(app) as port:
            instance = ServiceInstance("orders-1", "orders", "127.0.0.1", port)
            headers = {"traceparent": "00-not-a-trace"}  # malformed: a new trace, never an error
            codes = [
                (
                    await transport(Request("GET", path, headers=CIMultiDict(headers), instance=instance))
                ).status
                for path in ("/fail", "/missing", "/unavailable", "/nowhere")
            ]
    finally:
        await transport.aclose()
    assert codes == [500, 404, 503, 404]
    by_path = {dict(s.attributes or {})["url.path"]: s for s in spans.get_finished_spans()}
    assert all(s.parent is None for s in by_path.values())
    fail_span = by_path["/fail"]
    assert fail_span.status.status_code is StatusCode.ERROR
    assert [e.name for e in fail_span.events] == ["exception"]
    assert dict(fail_span.attributes or {})["http.response.status_code"] == 500
    assert by_path["/missing"].status.status_code is StatusCode.UNSET
    assert dict(by_path["/missing"].attributes or {})["http.response.status_code"] == 404
    assert by_path["/unavailable"].status.status_code is StatusCode.ERROR
    assert by_path["/nowhere"].name == "GET /nowhere"  # no route matched: the path


def fastapi_app(tracer: Tracer) -> FastAPI:
    app = FastAPI()
    app.add_middleware(TracingMiddleware, tracer=tracer)  # the one line

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    @app.get("/fail")
    async def fail() -> None:
        raise RuntimeError("broken")

    @app.get("/missing")
    async def missing() -> None:
        raise HTTPException(status_code=404)

    return app


async def test_fastapi_server_span_continues_the_callers_trace() -> None:
    server_tracer, server_spans = traced("items")
    caller_tracer, caller_spans = traced("caller")
    transport = AiohttpTransport()
    try:
        async with uvicorn_app(fastapi_app(server_tracer)) as port:
            response = await client(caller_tracer, "items", port, transport)(
                Request("GET", "/items/42", service="items")
            )
    finally:
        await transport.aclose()
    assert response.status == 200 and response.json() == {"id": 42}
    [attempt] = [s for s in caller_spans.get_finished_spans() if s.name == "attempt items"]
    [server] = only(server_spans.get_finished_spans(), SpanKind.SERVER)
    assert server.name == "GET /items/{item_id}"
    assert server.context.trace_id == attempt.context.trace_id
    assert server.parent is not None and server.parent.span_id == attempt.context.span_id
    attrs = dict(server.attributes or {})
    assert (attrs["http.route"], attrs["http.response.status_code"]) == ("/items/{item_id}", 200)


async def test_fastapi_reads_b3_and_seed_headers_and_records_errors() -> None:
    tracer, spans = traced("items")
    tid, sid = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    transport = AiohttpTransport()
    try:
        async with uvicorn_app(fastapi_app(tracer)) as port:
            instance = ServiceInstance("items-1", "items", "127.0.0.1", port)

            async def get(path: str, headers: dict[str, str]) -> int:
                return (
                    await transport(Request("GET", path, headers=CIMultiDict(headers), instance=instance))
                ).status

            codes = [
                await get("/items/1", {"b3": f"{tid}-{sid}-1"}),
                await get("/items/2", {"X-Trace-Id": tid, "X-Span-Id": sid, "X-Trace-Flags": "3"}),
                await get("/fail", {}),
                await get("/missing", {"traceparent": "garbage" * 100}),
            ]
    finally:
        await transport.aclose()
    assert codes == [200, 200, 500, 404]
    by_path = {dict(s.attributes or {})["url.path"]: s for s in spans.get_finished_spans()}
    for path in ("/items/1", "/items/2"):
        span = by_path[path]
        assert f"{span.context.trace_id:032x}" == tid
        assert span.parent is not None and f"{span.parent.span_id:016x}" == sid
    assert by_path["/fail"].status.status_code is StatusCode.ERROR
    assert by_path["/fail"].parent is None
    assert dict(by_path["/fail"].attributes or {})["http.response.status_code"] == 500
    assert by_path["/missing"].status.status_code is StatusCode.UNSET
    assert by_path["/missing"].parent is None


async def test_server_span_is_not_recorded_when_the_caller_did_not_sample() -> None:
    tracer, spans = traced("orders")
    app = web.Application(middlewares=[aiohttp_tracing_middleware(tracer)])

    async def ok(request: web.Request) -> web.StreamResponse:
        return web.Response(text="ok")

    app.router.add_get("/", ok)
    headers: dict[str, str] = {}
    MeshPropagator().inject(headers)  # nothing current: no trace headers at all
    assert headers == {}
    transport = AiohttpTransport()
    try:
        async with aiohttp_app(app) as port:
            instance = ServiceInstance("orders-1", "orders", "127.0.0.1", port)
            tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-02"  # flags 0x02: not sampled
            status = (await transport(Request(headers=CIMultiDict(traceparent=tp), instance=instance))).status
    finally:
        await transport.aclose()
    assert status == 200
    assert spans.get_finished_spans() == ()
