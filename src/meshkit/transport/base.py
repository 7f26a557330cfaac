"""The transport contract: send a request to `request.instance`, return its response.

It raises `ConnectError` when nothing was sent, `ConnectionReset` when the connection
broke mid-call and `RequestTimeout` when the attempt ran out of time, so the layers above
can classify outcomes without knowing which HTTP library sits here.
"""

from __future__ import annotations

import abc

from meshkit.types import Request, Response

DEADLINE_HEADER = "X-Meshkit-Deadline-Ms"  # remaining milliseconds, relative so clocks may differ


class Transport(abc.ABC):
    @abc.abstractmethod
    async def __call__(self, request: Request) -> Response: ...

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release pooled connections."""
