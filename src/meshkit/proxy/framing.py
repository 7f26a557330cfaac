"""Refusing request framing a proxy cannot trust (HTTP request smuggling, RFC 9112 6.1-6.3).

A proxy and the server behind it must agree on where each request ends; when they do
not, a second request hides inside the first one's body (Watchfire 2005; PortSwigger's
"HTTP Desync Attacks", 2019). aiohttp's C parser (llhttp) already refuses Content-Length
together with Transfer-Encoding, duplicate or malformed Content-Length, codings other
than a final `chunked`, and CR, LF or NUL inside headers. This check repeats the framing
rules on the parsed request, so the guarantee holds with aiohttp's pure-Python parser too
(which accepts `Transfer-Encoding: chunked, chunked`), and adds the one rule neither
enforces: HTTP/1.0 has no chunked coding, so an HTTP/1.0 request with Transfer-Encoding
is faulty framing (RFC 9112 6.1). It costs two header lookups on an ordinary request.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.http import HttpVersion11
from multidict import MultiMapping


class UnsafeFraming(ValueError):
    """The request's length cannot be determined unambiguously: refuse it, forward nothing."""


def check_framing(request: web.Request) -> None:
    """Raise `UnsafeFraming` unless the body's length has exactly one reading."""
    check_header_framing(request.headers, request.version >= HttpVersion11)


def check_header_framing(headers: MultiMapping[str], http11: bool) -> None:
    """`check_framing` on parsed header fields, for servers other than aiohttp's (the h1 engine)."""
    te = headers.getall("Transfer-Encoding", None)
    cl = headers.getall("Content-Length", None)
    if te is None and cl is None:
        return
    if te is not None:
        if cl is not None:
            raise UnsafeFraming("headers: Content-Length and Transfer-Encoding must not both be present")
        if not http11:
            raise UnsafeFraming("headers: Transfer-Encoding is not allowed in an HTTP/1.0 request")
        if len(te) != 1 or te[0].strip().lower() != "chunked":
            raise UnsafeFraming(f"headers: Transfer-Encoding must be exactly 'chunked', got {te!r}")
        return
    assert cl is not None
    if len(cl) != 1 or not cl[0].isdigit() or not cl[0].isascii():
        raise UnsafeFraming(f"headers: Content-Length must be one decimal number, got {cl!r}")
