"""Where a sidecar request goes: `/<service>/<path>?<query>` split, checked and normalised once.

The first path segment names the service and must be a valid service name exactly as
written (no percent-escapes, so `/cat%61log/` cannot alias `/catalog/`); the rest is
checked by `normalize_path`, the same guard `/call` uses, so the sidecar cannot be steered
off the named resource by dot segments, encoded slashes or control characters. A target
that is plainly safe (a valid name, then what `normalize_path` returns unchanged) is
split by one precompiled `fullmatch`; any other takes the full route, which alone refuses.
"""

from __future__ import annotations

import re

from meshkit.plane.ssrf import UnsafePath, normalize_path
from meshkit.plane.ssrf.path import MAX_PATH_LENGTH, PLAIN_QUERY, PLAIN_SEGMENTS
from meshkit.types import SERVICE_NAME, SERVICE_NAME_RE

_PLAIN_TARGET = re.compile(f"/({SERVICE_NAME})({PLAIN_SEGMENTS}*)({PLAIN_QUERY}?)")


class BadRoute(ValueError):
    """The request's target names no valid service."""


def split_target(raw_path: str) -> tuple[str, str]:
    """(`service`, normalised path with query) from a raw request target; raises BadRoute or UnsafePath."""
    plain = _PLAIN_TARGET.fullmatch(raw_path) if len(raw_path) <= MAX_PATH_LENGTH else None
    if plain is not None:
        service, path, query = plain.groups()
        return service, (path or "/") + query
    return full_split_target(raw_path)


def full_split_target(raw_path: str) -> tuple[str, str]:
    """`split_target` without its fast path: every check, on any input."""
    if not raw_path.startswith("/"):
        raise BadRoute(f"path: must start with /<service>/, got {raw_path[:80]!r}")
    end = len(raw_path)
    for sep in ("/", "?"):
        found = raw_path.find(sep, 1)
        if 0 < found < end:
            end = found
    service = raw_path[1:end]
    if not SERVICE_NAME_RE.match(service):
        raise BadRoute(
            f"service: the first path segment must match ^[a-z0-9-]+$ (1-64 characters), got {service[:80]!r}"
        )
    rest = raw_path[end:]
    if not rest.startswith("/"):
        rest = "/" + rest
    return service, normalize_path(rest)


__all__ = ["BadRoute", "UnsafePath", "split_target"]
