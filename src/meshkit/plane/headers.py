"""Which caller-supplied headers `/call` forwards upstream, and which it drops.

A proxy must not forward hop-by-hop headers (RFC 9110 7.6.1: Connection and every header it
names, Keep-Alive, Proxy-*, TE, Trailer, Transfer-Encoding, Upgrade); Host and
Content-Length are the transport's to set, and `X-Meshkit-*` headers are the mesh's own.
The control plane's bearer token never leaves it: the headers forwarded are only those in
the `/call` body, never the HTTP request's own, and any header whose value carries the
caller's control-plane token is dropped even if the caller put it in the body.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from multidict import CIMultiDict

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
SET_BY_TRANSPORT = frozenset({"host", "content-length"})
INTERNAL_PREFIX = "x-meshkit-"
MAX_HEADERS = 100
MAX_HEADER_BYTES = 16384
_TOKEN_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 field-name


class UnsafeHeader(ValueError):
    """A header that cannot be sent as given (bad name, CR/LF/NUL in a value, too large)."""


HeaderInput = Mapping[str, str] | Iterable[tuple[str, str]]


def _pairs(headers: HeaderInput) -> Iterable[tuple[str, str]]:
    return headers.items() if isinstance(headers, Mapping) else headers


def strip_hop_by_hop(headers: HeaderInput) -> CIMultiDict[str]:
    """A copy without hop-by-hop headers, the ones `Connection` names, Host and Content-Length."""
    pairs = list(_pairs(headers))
    named = {
        token.strip().lower()
        for name, value in pairs
        if name.lower() == "connection"
        for token in value.split(",")
        if token.strip()
    }
    drop = HOP_BY_HOP | SET_BY_TRANSPORT | named
    return CIMultiDict((name, value) for name, value in pairs if name.lower() not in drop)


def forwardable_headers(headers: HeaderInput, *, mesh_token: str | None = None) -> CIMultiDict[str]:
    """Validate the caller's headers and keep only those safe to send to the instance."""
    pairs = list(_pairs(headers))
    if len(pairs) > MAX_HEADERS:
        raise UnsafeHeader(f"headers: at most {MAX_HEADERS} headers, got {len(pairs)}")
    total = 0
    for name, value in pairs:
        if not isinstance(name, str) or not _TOKEN_RE.match(name):
            raise UnsafeHeader(f"headers: {name!r} is not a valid header name")
        if not isinstance(value, str) or any(c in value for c in "\r\n\x00"):
            raise UnsafeHeader(f"headers: the value of {name!r} contains CR, LF or NUL")
        total += len(name) + len(value)
    if total > MAX_HEADER_BYTES:
        raise UnsafeHeader(f"headers: at most {MAX_HEADER_BYTES} bytes in all, got {total}")
    kept = strip_hop_by_hop(pairs)
    return CIMultiDict(
        (name, value)
        for name, value in kept.items()
        if not name.lower().startswith(INTERNAL_PREFIX) and not (mesh_token and mesh_token in value)
    )
