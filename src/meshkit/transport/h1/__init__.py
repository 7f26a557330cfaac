"""An HTTP/1.1 client transport on asyncio Protocols and httptools, lighter than aiohttp's client.

`H1Transport` is a drop-in `Transport` for the data path: the sidecar (`meshkit proxy
--engine h1`) uses it; `AiohttpTransport` stays the library's default. The package holds
the request writer (`head`), one connection's protocol (`connection`), the per-endpoint
keep-alive pool (`pool`), the one timer for every exchange's deadline (`deadlines`) and the
transport that ties them to deadlines and errors.
"""

from meshkit.transport.h1.head import UnsafeRequest
from meshkit.transport.h1.transport import ConnectGuard, H1Transport

__all__ = ["ConnectGuard", "H1Transport", "UnsafeRequest"]
