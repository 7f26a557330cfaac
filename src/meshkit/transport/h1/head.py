"""Writing an HTTP/1.1 request (RFC 9112 3 and 6): request line, Host, fields, framing, body.

The transport owns the framing: a caller's Content-Length and Transfer-Encoding are
dropped and Content-Length is written from the body (and as 0 for POST, PUT and PATCH
without one, RFC 9110 8.6), so no header can make the request end elsewhere than the
bytes say. A caller's Host is kept (a virtual host behind the instance may need it).
CR, LF or NUL anywhere in the head would split it into lines the caller did not write
(header injection), so the head is refused unless each line break is one we wrote.
"""

from __future__ import annotations

from multidict import CIMultiDict

BODY_EXPECTED = frozenset({"POST", "PUT", "PATCH"})
_FRAMING = ("Host", "Content-Length", "Transfer-Encoding")
_INLINE_BODY = 16384  # bodies up to this size go out in the same write as the head


class UnsafeRequest(ValueError):
    """The request cannot be written as given (CR, LF, NUL or a space where they split the head)."""


def _fields(headers: CIMultiDict[str], host: str) -> tuple[str, int]:
    """The field lines and how many there are, with Host first and the caller's framing dropped."""
    if any(name in headers for name in _FRAMING):
        host = headers.get("Host", host)
        kept = [
            (k, v)
            for k, v in headers.items()
            if k.lower() not in ("host", "content-length", "transfer-encoding")
        ]
        text = "".join([f"{k}: {v}\r\n" for k, v in kept])
        return f"Host: {host}\r\n{text}", len(kept) + 1
    return f"Host: {host}\r\n" + "".join([f"{k}: {v}\r\n" for k, v in headers.items()]), len(headers) + 1


def encode_request(method: str, path: str, host: str, headers: CIMultiDict[str], body: bytes | None) -> bytes:
    """The request's bytes, head and (when small) body; raises UnsafeRequest for injected line breaks."""
    fields, lines = _fields(headers, host)
    if body is not None:
        fields += f"Content-Length: {len(body)}\r\n"
        lines += 1
    elif method in BODY_EXPECTED:
        fields += "Content-Length: 0\r\n"
        lines += 1
    head = f"{method} {path} HTTP/1.1\r\n{fields}\r\n"
    lines += 2  # the request line and the empty line
    if head.count("\n") != lines or head.count("\r") != lines or "\x00" in head or " " in path:
        raise UnsafeRequest(f"headers: CR, LF or NUL in a field, or a space in the path {path[:80]!r}")
    data = head.encode("utf-8", "surrogateescape")
    if body and len(body) <= _INLINE_BODY:
        return data + body
    return data


def body_after_head(body: bytes | None) -> bytes | None:
    """The body when it was too large to join the head's write, else None."""
    return body if body and len(body) > _INLINE_BODY else None
