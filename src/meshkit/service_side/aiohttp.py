"""Mesh membership for aiohttp apps in one call: registration hooks plus deadline and tracing middleware.

    app = web.Application()
    aiohttp_registration(app, "http://127.0.0.1:8080", "orders", "127.0.0.1", 8001, tracer=tracer)

The instance registers in `on_startup`, heartbeats while the app runs and deregisters in
`on_shutdown` (before open connections are closed, so callers stop picking it first;
`on_cleanup` repeats it for apps stopped without a shutdown). The deadline middleware lets
handlers inherit their caller's deadline; the tracing middleware makes each request a span.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aiohttp import web

from meshkit.observe.server import aiohttp_tracing_middleware
from meshkit.observe.tracing import Tracer
from meshkit.resilience.deadline import deadline_middleware
from meshkit.service_side.registration import RegistryTarget, ServiceRegistration
from meshkit.types import HealthCheck

REGISTRATION_KEY = web.AppKey("meshkit_registration", ServiceRegistration)


def aiohttp_registration(
    app: web.Application,
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
    tracer: Tracer | None = None,
    deadlines: bool = True,
) -> ServiceRegistration:
    """Hook a `ServiceRegistration` (returned, also at `app[REGISTRATION_KEY]`) into the app's lifecycle."""
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
    if tracer is not None:
        app.middlewares.append(aiohttp_tracing_middleware(tracer))
    if deadlines:
        app.middlewares.append(deadline_middleware)
    app[REGISTRATION_KEY] = registration

    async def start(_: web.Application) -> None:
        await registration.start()

    async def stop(_: web.Application) -> None:
        await registration.stop()

    app.on_startup.append(start)
    app.on_shutdown.append(stop)
    app.on_cleanup.append(stop)
    return registration
