"""Registration helpers for services: register on start-up, heartbeat, deregister on shutdown.

`ServiceRegistration` is the lifecycle; `aiohttp_registration` and `mesh_lifespan` /
`add_mesh_middleware` hook it (with deadline and tracing middleware) into aiohttp and
FastAPI/Starlette apps in a few lines.
"""

from meshkit.service_side.aiohttp import REGISTRATION_KEY, aiohttp_registration
from meshkit.service_side.asgi import add_mesh_middleware, mesh_lifespan
from meshkit.service_side.registration import ServiceRegistration, heartbeat_every, open_target

__all__ = [
    "REGISTRATION_KEY",
    "ServiceRegistration",
    "add_mesh_middleware",
    "aiohttp_registration",
    "heartbeat_every",
    "mesh_lifespan",
    "open_target",
]
