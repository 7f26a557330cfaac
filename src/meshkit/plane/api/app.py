"""`create_app(plane)`: the control plane's FastAPI application, every router mounted once.

The routers are shells over one `ControlPlane`; this module only assembles them: v2 under
/api/v1/mesh/v2, the deprecated v1 queue under /api/v1/mesh, OTLP ingest at /v1/traces,
Prometheus at /metrics, OpenAPI at /docs. Other parts of meshkit (the dashboard) add their
own routers through `extra_routers`. The lifespan starts and stops the plane. `POST .../call`
is answered first by `CallFastLane` (see `fastcall.py`), which hands the route whatever it
cannot vouch for; `fast_call=False` serves every request through the route.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from functools import partial

from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import Response

from meshkit.plane.api import errors
from meshkit.plane.api.deps import principal, reader
from meshkit.plane.api.fastcall import CallFastLane
from meshkit.plane.api.framing import FramingCheck
from meshkit.plane.api.limits import DEFAULT_MAX_BODY_BYTES, BodyLimit, Receive, Scope, Send
from meshkit.plane.api.models import ERROR_RESPONSES
from meshkit.plane.api.traces import otlp_router, traces_router
from meshkit.plane.api.v2 import v2_router
from meshkit.plane.legacy import legacy_router
from meshkit.plane.plane import ControlPlane

V2_PREFIX = "/api/v1/mesh/v2"
OTLP_PATH = "/v1/traces"
CALL_PATH = f"{V2_PREFIX}/call"


class PlaneApp(FastAPI):
    """FastAPI with one route answered ahead of the middleware chain: `POST .../call` by `fast_call`."""

    fast_call: CallFastLane | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        lane = self.fast_call
        if (
            lane is not None
            and scope["type"] == "http"
            and scope["path"] == CALL_PATH
            and scope["method"] == "POST"
            and not scope.get("root_path")
        ):
            return await lane(scope, receive, send)
        await super().__call__(scope, receive, send)


def create_app(
    plane: ControlPlane,
    extra_routers: Iterable[APIRouter] = (),
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    fast_call: bool = True,
) -> PlaneApp:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await plane.start()
        try:
            yield
        finally:
            await plane.close()

    app = PlaneApp(
        title="meshkit control plane",
        description="Service registry, discovery, calls through the mesh, configuration, metrics and traces.",
        version="2.1.0",
        lifespan=lifespan,
    )
    app.state.plane = plane
    errors.install(app)
    app.include_router(v2_router(plane), prefix=V2_PREFIX)
    app.include_router(traces_router(plane), prefix=V2_PREFIX)
    app.include_router(otlp_router(plane))
    legacy = legacy_router(plane.queue_provider, write_dependencies=[Depends(principal)], v2_prefix=V2_PREFIX)
    app.include_router(legacy, dependencies=[Depends(reader)], responses=ERROR_RESPONSES)

    @app.get(
        "/metrics",
        response_class=Response,
        dependencies=[Depends(reader)],
        tags=["metrics"],
        responses=ERROR_RESPONSES,
    )
    async def metrics() -> Response:
        """Prometheus text exposition (the same as /api/v1/mesh/v2/metrics)."""
        body, content_type = plane.metrics_text()
        return Response(body, media_type=content_type)

    for router in extra_routers:  # the dashboard and other add-ons
        app.include_router(router)
    app.add_middleware(
        BodyLimit,  # type: ignore[arg-type]
        max_bytes=max_body_bytes,
        per_path={OTLP_PATH: plane.collector.max_bytes},
    )
    app.add_middleware(FramingCheck)  # type: ignore[arg-type]  # outermost: before any body is read
    if fast_call:
        route = partial(FastAPI.__call__, app)
        app.fast_call = CallFastLane(plane, route, max_body_bytes=max_body_bytes)
    return app
