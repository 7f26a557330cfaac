"""Transports: the only code in meshkit that does network I/O.

`AiohttpTransport` is the default (a well-kept client, pooled, about 10x faster than httpx
here); `H1Transport` is meshkit's own HTTP/1.1 client on asyncio Protocols and httptools,
about 2-3x cheaper per request than aiohttp, which the sidecar proxy uses by default.
"""

from meshkit.transport.aiohttp import AiohttpTransport
from meshkit.transport.base import Transport
from meshkit.transport.h1 import H1Transport
from meshkit.transport.mock import MockTransport

__all__ = ["AiohttpTransport", "H1Transport", "MockTransport", "Transport"]
