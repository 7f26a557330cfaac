"""Turning what a client sent into what the mesh stores and sends, refusing what it cannot.

The seed accepted any JSON as metadata values and as a `/call` body; they are kept as
JSON text (integers beyond 64 bits included, which orjson refuses and the standard library
writes). Over-long bodies are refused with the 413 of the SSRF guard, never cut.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from meshkit.plane.ssrf import BodyTooLarge
from meshkit.registry.base import Registry
from meshkit.types import HealthCheck


def json_text(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # integers beyond 64 bits: the standard library writes them
        return json.dumps(value, ensure_ascii=False, allow_nan=False)


def metadata_strings(metadata: Mapping[str, Any] | None) -> dict[str, str]:
    """The seed accepted any JSON metadata values; non-strings are stored as their JSON text."""
    return {
        key: value if isinstance(value, str) else json_text(value) for key, value in (metadata or {}).items()
    }


def parse_check(check: HealthCheck | Mapping[str, Any] | None) -> HealthCheck | None:
    if check is None or isinstance(check, HealthCheck):
        return check
    try:
        return HealthCheck(**check)
    except TypeError as exc:
        raise ValueError(f"check: {exc}") from None


def encode_body(body: Any, max_bytes: int) -> bytes | None:
    """The /call body as bytes: text as UTF-8, anything else as JSON; over `max_bytes` is 413."""
    if body is None:
        return None
    data = (body if isinstance(body, str) else json_text(body)).encode("utf-8")
    if len(data) > max_bytes:
        raise BodyTooLarge(f"body: must be at most {max_bytes} bytes, got {len(data)}")
    return data


def describe_registry(registry: Registry | str | None, data_dir: Path | None) -> str:
    """What `serve` prints about the registry (a URL's password masked)."""
    if registry is not None and not isinstance(registry, str):
        return type(registry).__name__
    if registry not in (None, "embedded"):
        parts = urlsplit(str(registry))
        if parts.password is not None:
            return parts._replace(netloc=f"{parts.username or ''}:***@{parts.hostname}:{parts.port}").geturl()
        return str(registry)
    return f"embedded (SQLite in {data_dir})" if data_dir is not None else "embedded (in memory)"
