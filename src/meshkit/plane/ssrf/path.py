"""Checking and normalising the path of a forwarded call, once, refusing rather than repairing.

Anything that could change which resource, or which host, the instance's URL reaches is
refused: absolute and scheme-relative URLs, `//`, dot segments (also `%2e%2e`, `..;`), encoded
slashes and backslashes, double encoding (`%252f`), overlong UTF-8 (`%c0%ae`), characters
that Unicode-fold to `/` or `.`, CR, LF, NUL and other controls, fragments and `@`. The
query is kept, checked for encoded controls. (OWASP SSRF and path-traversal cheat sheets.)

Most paths need none of that: a path of RFC 3986 `pchar`s without `%` or `@`, no `//` and
no segment starting with `.`, then a query of printable ASCII without `%` or `#`, is already
normal and safe, so one precompiled `fullmatch` returns it as is (the sidecar's hot path);
anything else takes the full check, which alone decides every refusal.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import unquote_to_bytes

MAX_PATH_LENGTH = 8192
_PCT_RE = re.compile(r"%(?![0-9a-fA-F]{2})")
# What the full check returns unchanged: '/'-led segments of pchars (RFC 3986 3.3) without
# '%' and '@', none starting with '/' or '.' (no '//', no dot segment), so nothing to decode
# or fold; then a query of printable ASCII without '%' and '#' (nothing to decode).
PLAIN_SEGMENTS = r"(?:/(?![/.])[A-Za-z0-9\-._~!$&'()*+,;=:]*)"
PLAIN_QUERY = r"(?:\?[!\"$&-~]*)"
_PLAIN = re.compile(f"{PLAIN_SEGMENTS}+{PLAIN_QUERY}?")
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


class UnsafePath(ValueError):
    """The path of a forwarded call could reach something other than the named resource."""


def _refuse(reason: str, raw: str) -> UnsafePath:
    shown = raw if len(raw) <= 80 else raw[:77] + "..."
    return UnsafePath(f"path: {reason}, got {shown!r}")


def _check_chars(raw: str) -> None:
    for ch in raw:
        code = ord(ch)
        if code < 0x21 or code >= 0x7F:
            what = {0: "a NUL", 0x0D: "a CR", 0x0A: "an LF", 0x20: "a space"}.get(
                code, "a control or non-ASCII"
            )
            raise _refuse(f"{what} character is not allowed (percent-encode it)", raw)


def _decode(part: str, raw: str) -> str:
    """Decode percent-escapes once; refuse malformed, double or non-UTF-8 encodings."""
    if _PCT_RE.search(part):
        raise _refuse("a '%' must start a two-digit hex escape", raw)
    try:
        decoded = unquote_to_bytes(part).decode("utf-8")
    except UnicodeDecodeError:
        raise _refuse("percent-escapes must encode valid UTF-8 (no overlong forms)", raw) from None
    if "%" in decoded and re.search(r"%[0-9a-fA-F]{2}", decoded):
        raise _refuse("double percent-encoding is not allowed", raw)
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in decoded):
        raise _refuse("encoded control characters (CR, LF, NUL...) are not allowed", raw)
    return decoded


def _canonical_escapes(part: str) -> str:
    """Decode escapes of unreserved characters and upper-case the rest (RFC 3986 6.2.2)."""

    def fix(m: re.Match[str]) -> str:
        byte = int(m.group(1), 16)
        return chr(byte) if byte in _UNRESERVED else f"%{byte:02X}"

    return re.sub(r"%([0-9a-fA-F]{2})", fix, part)


def normalize_path(raw: str) -> str:
    """Check and normalise the path (and query) of a forwarded call, once; raise `UnsafePath`."""
    if type(raw) is str and len(raw) <= MAX_PATH_LENGTH and _PLAIN.fullmatch(raw):
        return raw
    return full_normalize_path(raw)


def full_normalize_path(raw: str) -> str:
    """`normalize_path` without its fast path: every check, on any input."""
    if not isinstance(raw, str):
        raise UnsafePath(f"path: must be a string, got {type(raw).__name__}")
    if len(raw) > MAX_PATH_LENGTH:
        raise UnsafePath(f"path: must be at most {MAX_PATH_LENGTH} characters, got {len(raw)}")
    _check_chars(raw)
    if not raw.startswith("/"):
        raise _refuse("must start with '/' (absolute URLs and bare host names are not allowed)", raw)
    if "#" in raw:
        raise _refuse("a fragment ('#') is not allowed", raw)
    path, sep, query = raw.partition("?")
    if "\\" in path:
        raise _refuse("backslashes are not allowed", raw)
    if "@" in path:
        raise _refuse("'@' is not allowed in the path (it can pose as user information)", raw)
    if "//" in path:
        raise _refuse("'//' is not allowed (it can name another host)", raw)
    decoded = _decode(path, raw)
    if decoded.count("/") != path.count("/") or "\\" in decoded:
        raise _refuse("encoded slashes or backslashes are not allowed", raw)
    folded = unicodedata.normalize("NFKC", decoded)
    if folded != decoded and any(folded.count(c) != decoded.count(c) for c in "/\\.%?#@"):
        raise _refuse("characters that fold to '/', '\\' or '.' are not allowed", raw)
    for segment in decoded.split("/"):
        if segment.split(";", 1)[0] in (".", ".."):
            raise _refuse("'.' and '..' segments are not allowed", raw)
    if sep:
        _decode(query, raw)
    normalized = _canonical_escapes(path)
    return f"{normalized}?{_canonical_escapes(query)}" if sep else normalized
