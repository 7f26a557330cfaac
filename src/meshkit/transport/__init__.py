"""Transports: the only code in meshkit that does network I/O."""

from meshkit.transport.aiohttp import AiohttpTransport
from meshkit.transport.base import Transport
from meshkit.transport.mock import MockTransport

__all__ = ["AiohttpTransport", "MockTransport", "Transport"]
