"""A service is an async function from `Request` to `Response` ("your server as a function").

Every layer of the client stack is a `Service` that wraps another one, and the transport
at the bottom is a `Service` too, so any piece can be called, replaced or tested alone.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from meshkit.types import Request, Response


@runtime_checkable
class Service(Protocol):
    async def __call__(self, request: Request) -> Response: ...


Handler = Callable[[Request], Awaitable[Response]]


class ServiceFn:
    """Adapts a plain `async def handler(request) -> Response` into a `Service`."""

    __slots__ = ("_fn",)

    def __init__(self, fn: Handler) -> None:
        self._fn = fn

    async def __call__(self, request: Request) -> Response:
        return await self._fn(request)

    def __repr__(self) -> str:
        return f"ServiceFn({getattr(self._fn, '__qualname__', self._fn)!r})"


def service_fn(fn: Handler) -> Service:
    return ServiceFn(fn)
