"""Mesh membership for FastAPI and Starlette apps: a lifespan and the deadline and tracing middleware.

    app = FastAPI(lifespan=mesh_lifespan("http://127.0.0.1:8080", "orders", "127.0.0.1", 8001))
    add_mesh_middleware(app, tracer=tracer)

`mesh_lifespan` registers once the server starts, heartbeats while it runs and
deregisters on shutdown; it wraps the app's own lifespan when given one (`inner=`), so the
service is registered only while its own resources are up.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, Protocol

from meshkit.observe.server import TracingMiddleware
from meshkit.observe.tracing import Tracer
from meshkit.resilience.deadline import DeadlineMiddleware
from meshkit.service_side.registration import RegistryTarget, ServiceRegistration
from meshkit.types import HealthCheck

Lifespan = Callable[[Any], contextlib.AbstractAsyncContextManager[Any]]


class _MiddlewareHost(Protocol):
    def add_middleware(self, middleware_class: Any, *args: Any, **kwargs: Any) -> None: ...


def mesh_lifespan(
    registry_or_url: RegistryTarget,
    name: str,
    address: str,
    port: int,
    *,
    tags: Sequence[str] = (),
    metadata: Mapping[str, str] | None = None,
    check: HealthCheck | None = None,
    ttl: float | None = None,
    heartbeat_interval: float | None = None,
    token: str | None = None,
    inner: Lifespan | None = None,
) -> Lifespan:
    """A `lifespan=` for FastAPI/Starlette; the registration is at `app.state.mesh_registration`."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[Any]:
        registration = ServiceRegistration(
            registry_or_url,
            name,
            address,
            port,
            tags=tags,
            metadata=metadata,
            check=check,
            ttl=ttl,
            heartbeat_interval=heartbeat_interval,
            token=token,
        )
        state = getattr(app, "state", None)
        if state is not None:
            state.mesh_registration = registration
        async with contextlib.AsyncExitStack() as stack:
            inner_state = await stack.enter_async_context(inner(app)) if inner is not None else None
            await stack.enter_async_context(registration)
            yield inner_state

    return lifespan


def add_mesh_middleware(
    app: _MiddlewareHost, *, tracer: Tracer | None = None, deadlines: bool = True
) -> None:
    """Add deadline propagation and, with a tracer, a server span per request (tracing outermost)."""
    if deadlines:
        app.add_middleware(DeadlineMiddleware)
    if tracer is not None:
        app.add_middleware(TracingMiddleware, tracer=tracer)
