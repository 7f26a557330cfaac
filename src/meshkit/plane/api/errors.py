"""Exception handlers: every refusal the plane or the mesh makes becomes a JSON 4xx/5xx.

Each exception type maps to one status: input errors (ValueError naming the field) 422,
unsafe paths and headers 400, no or bad token 401, not allowed 403, unknown 404, taken 409,
too large 413, and the mesh's own failures 503 (no instance, open circuits, retry budget,
transport, registry or Redis down) or 504 (deadline). Validation errors are reported
without echoing the input back, so nothing the client sent can make the answer unencodable.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.responses import Response

from meshkit.errors import (
    CircuitOpen,
    ConnectError,
    DeadlineExceeded,
    MeshError,
    NoHealthyInstances,
    RegistryUnavailable,
    RequestTimeout,
    RetryBudgetExhausted,
    TransportError,
)
from meshkit.plane.auth import Forbidden, Unauthenticated
from meshkit.plane.calls import text
from meshkit.plane.collector import CollectorError
from meshkit.plane.headers import UnsafeHeader
from meshkit.plane.legacy import QueueUnavailable
from meshkit.plane.problems import Conflict, NotFound
from meshkit.plane.ssrf import BodyTooLarge, UnsafePath, is_unsafe_connect

Handler = Callable[[Request, Any], Awaitable[Response]]


def error(status: int, detail: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """Type, location and message of each error; the input itself is not echoed."""
    out = []
    for e in exc.errors():
        loc = [part if isinstance(part, int) else text(str(part))[:200] for part in e.get("loc", ())]
        out.append({"type": str(e.get("type", "")), "loc": loc, "msg": text(str(e.get("msg", "")))[:500]})
    return out


def _fixed(status: int, prefix: str = "") -> Handler:
    async def handle(request: Request, exc: Exception) -> Response:
        return error(status, prefix + text(str(exc)))

    return handle


async def _validation(request: Request, exc: RequestValidationError) -> Response:
    return error(422, validation_errors(exc))


async def _http(request: Request, exc: HTTPException) -> Response:
    return error(exc.status_code, exc.detail, dict(exc.headers) if exc.headers else None)


async def _unauthenticated(request: Request, exc: Unauthenticated) -> Response:
    return error(401, str(exc), {"WWW-Authenticate": "Bearer"})


async def _connect(request: Request, exc: ConnectError) -> Response:
    if is_unsafe_connect(exc):
        return error(403, f"refused: the instance resolves to an address calls may not reach ({exc})")
    return error(503, text(str(exc)))


async def _collector(request: Request, exc: CollectorError) -> Response:
    return error(exc.status, exc.message)


HANDLERS: dict[type[Exception], Handler] = {
    RequestValidationError: _validation,
    HTTPException: _http,
    ValueError: _fixed(422),
    UnsafePath: _fixed(400),
    UnsafeHeader: _fixed(400),
    BodyTooLarge: _fixed(413),
    Unauthenticated: _unauthenticated,
    Forbidden: _fixed(403),
    NotFound: _fixed(404),
    Conflict: _fixed(409),
    RegistryUnavailable: _fixed(503, "registry unavailable: "),
    QueueUnavailable: _fixed(503),
    CollectorError: _collector,
    NoHealthyInstances: _fixed(503),
    CircuitOpen: _fixed(503),
    RetryBudgetExhausted: _fixed(503),
    TransportError: _fixed(503),
    ConnectError: _connect,
    RequestTimeout: _fixed(504),
    DeadlineExceeded: _fixed(504),
    MeshError: _fixed(503),
}


def handler_for(exc: BaseException) -> Handler | None:
    """The handler Starlette would pick for `exc`: the first of its classes, in MRO order, that has one."""
    for cls in type(exc).__mro__:
        handler = HANDLERS.get(cls)
        if handler is not None:
            return handler
    return None


def install(app: FastAPI) -> None:
    for exc_type, handler in HANDLERS.items():
        app.add_exception_handler(exc_type, handler)
