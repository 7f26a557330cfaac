"""Writing an HTTP/1.1 request (RFC 9112 3 and 6): request line, Host, fields, framing, body.

The transport owns the framing: a caller's Content-Length and Transfer-Encoding are
dropped and Content-Length is written from the body (and as 0 for POST, PUT and PATCH
without one, RFC 9110 8.6), so no header can make the request end elsewhere than the
bytes say. A caller's Host is kept (a virtual host behind the instance may need it).
The attempt's deadline (`X-Meshkit-Deadline-Ms`) is the transport's too: written from the
time left, in place of any the caller's headers carry, without touching those headers.
CR, LF or NUL anywhere in the head would split it into lines the caller did not write
(header injection), so the head is refused unless each line break is one we wrote.
"""

from __future__ import annotations

from collections.abc import Collection

from multidict import CIMultiDict, istr

from meshkit.transport.base import DEADLINE_HEADER

BODY_EXPECTED = frozenset({"POST", "PUT", "PATCH"})
_HOST, _CONTENT_LENGTH, _TRANSFER_ENCODING = istr("Host"), istr("Content-Length"), istr("Transfer-Encoding")
_DEADLINE = istr(DEADLINE_HEADER)
_FRAMING = frozenset({"host", "content-length", "transfer-encoding"})
_FRAMING_AND_DEADLINE = _FRAMING | {DEADLINE_HEADER.lower()}
_INLINE_BODY = 16384  # bodies up to this size go out in the same write as the head


class UnsafeRequest(ValueError):
    """The request cannot be written as given (CR, LF, NUL or a space where they split the head)."""


def field_lines(items: Collection[tuple[str, object]]) -> str:
    """`Name: value` CRLF for each pair, joined in C (a value that is no string is written as str())."""
    if not items:
        return ""
    try:
        return "\r\n".join(map(": ".join, items)) + "\r\n"  # type: ignore[arg-type]
    except TypeError:
        return "".join([f"{k}: {v}\r\n" for k, v in items])


def encode_request(
    method: str,
    path: str,
    host: str,
    headers: CIMultiDict[str],
    body: bytes | None,
    deadline_ms: int | None = None,
) -> bytes:
    """The request's bytes, head and (when small) body; raises UnsafeRequest for injected line breaks.
    With `deadline_ms`, the head carries it as `X-Meshkit-Deadline-Ms` (the caller's is left out)."""
    items: Collection[tuple[str, str]] = headers.items()
    if (
        _HOST in headers
        or _CONTENT_LENGTH in headers
        or _TRANSFER_ENCODING in headers
        or _DEADLINE in headers
    ):
        host = headers.get(_HOST, host)
        dropped = _FRAMING if deadline_ms is None else _FRAMING_AND_DEADLINE
        items = [(k, v) for k, v in items if k.lower() not in dropped]
    lines = len(items) + 3  # the request line, Host, the fields and the empty line
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n{field_lines(items)}"
    if deadline_ms is not None:
        head += f"{DEADLINE_HEADER}: {deadline_ms}\r\n"
        lines += 1
    if body is not None:
        head += f"Content-Length: {len(body)}\r\n"
        lines += 1
    elif method in BODY_EXPECTED:
        head += "Content-Length: 0\r\n"
        lines += 1
    head += "\r\n"
    if head.count("\n") != lines or head.count("\r") != lines or "\x00" in head or " " in path:
        raise UnsafeRequest(f"headers: CR, LF or NUL in a field, or a space in the path {path[:80]!r}")
    data = head.encode("utf-8", "surrogateescape")
    if body and len(body) <= _INLINE_BODY:
        return data + body
    return data


def body_after_head(body: bytes | None) -> bytes | None:
    """The body when it was too large to join the head's write, else None."""
    return body if body and len(body) > _INLINE_BODY else None
