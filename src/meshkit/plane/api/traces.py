"""Tracing endpoints: OTLP/HTTP ingest at /v1/traces, and search, traces and dependencies.

`POST /v1/traces` is where any OpenTelemetry exporter sends (protobuf or JSON, gzip or
not); it writes, so it always needs a token, admin or service alike, even with --public-read
(which opens reads only); exporters send one with
`OTEL_EXPORTER_OTLP_HEADERS="Authorization=Bearer <token>"`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from meshkit.plane.api import models as m
from meshkit.plane.api.deps import principal, reader
from meshkit.plane.plane import MAX_WINDOW, ControlPlane

Read = [Depends(reader)]
Write = [Depends(principal)]
OTLP_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
            "application/json": {"schema": {"type": "object"}},
        },
    },
    "responses": {
        "200": {"description": "ExportTraceServiceResponse, encoded like the request"},
        "4XX": {"description": "google.rpc.Status, encoded like the request (or JSON {detail})"},
        "503": {"description": "The span store cannot take spans now; retry"},
    },
}


def otlp_router(plane: ControlPlane) -> APIRouter:
    router = APIRouter(tags=["tracing"])

    @router.post("/v1/traces", dependencies=Write, response_class=Response, openapi_extra=OTLP_BODY)
    async def ingest(request: Request) -> Response:
        """OTLP/HTTP trace export (ExportTraceServiceRequest)."""
        headers = request.headers
        reply = await plane.ingest_traces(
            await request.body(), headers.get("content-type", ""), headers.get("content-encoding")
        )
        return Response(reply.body, status_code=reply.status, media_type=reply.content_type)

    return router


def traces_router(plane: ControlPlane) -> APIRouter:
    router = APIRouter(tags=["tracing"], dependencies=Read, responses=m.ERROR_RESPONSES)

    @router.get("/traces", response_model=list[m.TraceSummary])
    async def search(
        service_name: Annotated[str | None, Query(max_length=256)] = None,
        operation_name: Annotated[str | None, Query(max_length=1024)] = None,
        min_duration: Annotated[float | None, Query(ge=0, allow_inf_nan=False, description="ms")] = None,
        max_duration: Annotated[float | None, Query(ge=0, allow_inf_nan=False, description="ms")] = None,
        error_only: bool = False,
        limit: Annotated[int, Query(ge=1, le=1000)] = 20,
    ) -> list[dict[str, Any]]:
        return await plane.search_traces(
            service_name=service_name,
            operation_name=operation_name,
            min_duration=min_duration,
            max_duration=max_duration,
            error_only=error_only,
            limit=limit,
        )

    @router.get("/traces/{trace_id}", response_model=dict[str, Any])
    async def get_trace(trace_id: str) -> dict[str, Any]:
        return await plane.get_trace(trace_id)

    @router.get("/dependencies", response_model=list[m.DependencyEdge])
    async def dependencies(
        window: Annotated[
            float | None, Query(gt=0, le=MAX_WINDOW, allow_inf_nan=False, description="seconds")
        ] = None,
    ) -> list[dict[str, Any]]:
        return await plane.dependencies(window)

    return router
