"""Authentication dependencies: who is calling, and may they read, act, or administer.

They only pass the `Authorization` header to the plane, which decides; `HTTPBearer` is
there so the OpenAPI spec documents the scheme (it never refuses by itself). They are
`async def` although they do no I/O: FastAPI runs a plain `def` dependency in a worker
thread, a thread hop per dependency per request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPBearer

from meshkit.plane.auth import Principal
from meshkit.plane.plane import ControlPlane

bearer = HTTPBearer(auto_error=False, description="The admin token or a service token.")
Documented = Annotated[Any, Depends(bearer)]


def _plane(request: Request) -> ControlPlane:
    plane: ControlPlane = request.app.state.plane
    return plane


async def principal(request: Request, _: Documented) -> Principal:
    """Any valid token: register, deregister, heartbeat, call, enqueue (401 without one)."""
    return _plane(request).authenticate(request.headers.get("authorization"))


async def reader(request: Request, _: Documented) -> Principal | None:
    """Read-only endpoints: any valid token, or nobody with --public-read."""
    return _plane(request).authorize_read(request.headers.get("authorization"))


async def admin(request: Request, who: Annotated[Principal, Depends(principal)]) -> Principal:
    """The admin token only: configure and tokens (403 for a service token)."""
    _plane(request).require_admin(who)
    return who


Caller = Annotated[Principal, Depends(principal)]
Admin = Annotated[Principal, Depends(admin)]
Reader: Callable[..., Any] = reader
