"""The connect-time check: aiohttp resolver and socket factory that refuse unsafe IPs.

Registration-time checks do not stop a name that resolves to 169.254.169.254 later (DNS
rebinding), so the IP actually dialled is checked again: `GuardedResolver` refuses answers
with an unsafe IP, and `guarded_socket` (aiohttp's `socket_factory`, which also sees IP
literals the resolver never does) refuses the exact address before `connect()`.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from meshkit.plane.ssrf.address import unsafe_ip_reason


class UnsafeConnect(PermissionError):
    """Raised at connect time for an unsafe resolved IP; an OSError, so aiohttp reports it as
    a connect error (`meshkit.errors.ConnectError`) and nothing is sent."""


def refuse_unsafe_ip(host: str, port: int = 0) -> None:
    """Refuse (`UnsafeConnect`) an address a call may not reach; also `H1Transport`'s connect guard."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        raise UnsafeConnect(13, f"refusing to connect to {host!r}: not an IP address") from None
    reason = unsafe_ip_reason(ip)
    if reason is not None:
        raise UnsafeConnect(13, f"refusing to connect to {ip}: {reason}")


class GuardedResolver(AbstractResolver):
    """Resolves with an inner resolver (aiohttp's ThreadedResolver by default) and refuses any
    answer that contains an unsafe IP: a name that rebinds to a metadata address fails whole."""

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self._inner = inner if inner is not None else aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            refuse_unsafe_ip(result["host"])
        return results

    async def close(self) -> None:
        await self._inner.close()


def guarded_socket(addr_info: tuple[Any, ...]) -> socket.socket:
    """aiohttp `socket_factory`: the last check, on the exact address about to be dialled."""
    family, type_, proto, _, sockaddr = addr_info
    refuse_unsafe_ip(str(sockaddr[0]))
    return socket.socket(family=family, type=type_, proto=proto)


class GuardedConnector(aiohttp.TCPConnector):
    """A TCPConnector that will not dial link-local, metadata and other unsafe addresses.

    Usable as `AiohttpTransport(connector_factory=GuardedConnector)`.
    """

    def __init__(self, *, resolver: AbstractResolver | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("socket_factory", guarded_socket)
        super().__init__(resolver=GuardedResolver(resolver), **kwargs)


def guarded_connector(**kwargs: Any) -> aiohttp.TCPConnector:
    return GuardedConnector(**kwargs)


def is_unsafe_connect(exc: BaseException | None) -> bool:
    """True when `exc` (or what caused it) is a connect-time SSRF refusal."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, UnsafeConnect) or isinstance(getattr(exc, "os_error", None), UnsafeConnect):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False
