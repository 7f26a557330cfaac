"""Where a sidecar request goes: `/<service>/<path>?<query>` split, checked and normalised once.

The first path segment names the service and must be a valid service name exactly as
written (no percent-escapes, so `/cat%61log/` cannot alias `/catalog/`); the rest is
checked by `normalize_path`, the same guard `/call` uses, so the sidecar cannot be steered
off the named resource by dot segments, encoded slashes or control characters.
"""

from __future__ import annotations

from meshkit.plane.ssrf import UnsafePath, normalize_path
from meshkit.types import SERVICE_NAME_RE


class BadRoute(ValueError):
    """The request's target names no valid service."""


def split_target(raw_path: str) -> tuple[str, str]:
    """(`service`, normalised path with query) from a raw request target; raises BadRoute or UnsafePath."""
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
