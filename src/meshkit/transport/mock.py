"""A transport that calls a plain function instead of the network, for unit tests.

`MockTransport(handler)`, as in httpx: `handler(request)` returns a `Response` (or
raises a transport error) and may be sync or async. Every request is recorded.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

from meshkit.transport.base import Transport
from meshkit.types import Request, Response

MockHandler = Callable[[Request], Response | Awaitable[Response]]


class MockTransport(Transport):
    def __init__(self, handler: MockHandler) -> None:
        self.handler = handler
        self.requests: list[Request] = []

    async def __call__(self, request: Request) -> Response:
        self.requests.append(request)
        result = self.handler(request)
        response = await result if inspect.isawaitable(result) else result
        response.instance = request.instance
        return response
