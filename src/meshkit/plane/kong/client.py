"""KongAdmin: a small client for Kong's Admin API (services, routes, upstreams, targets).

It speaks the documented shapes only: lists are pages of `{"data": [...], "next": ...}`
followed until `next` is null; `PUT /{entity}/{name}` creates or replaces an entity by
name (an upsert, so a retried write does no harm); DELETE answers 204. Kong Enterprise's
RBAC token goes in the `Kong-Admin-Token` header. An unreachable Admin API or a 5xx
raises `KongUnavailable` naming the address; any other refusal raises `KongError` with
Kong's own message.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import aiohttp
import orjson
from yarl import URL

MIN_VERSION = (2, 0)  # tags on every entity and the tags= filter


class KongError(Exception):
    """Kong refused a request; `status` is its HTTP status (0 when it could not be reached)."""

    def __init__(self, message: str, status: int = 0) -> None:
        self.status = status
        super().__init__(message)


class KongUnavailable(KongError):
    """The Admin API could not be reached, or answered 5xx."""


def segment(value: str) -> str:
    return quote(value, safe="")


class KongAdmin:
    """One aiohttp session to one Admin API address."""

    def __init__(
        self, url: str, *, token: str | None = None, timeout: float = 5.0, page_size: int = 100
    ) -> None:
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"kong_admin_url: must be an http(s) URL such as http://127.0.0.1:8001, got {url!r}"
            )
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise ValueError(f"timeout: must be a number of seconds > 0, got {timeout!r}")
        if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= 1000:
            raise ValueError(f"page_size: must be an integer in 1-1000, got {page_size!r}")
        self.url = url.rstrip("/")
        self._headers = {"Kong-Admin-Token": token} if token else {}
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._page_size = page_size
        self._session: aiohttp.ClientSession | None = None
        self.version = ""

    async def start(self) -> str:
        """Open the session and check that a Kong of a usable version answers; its version."""
        if self._session is None:
            self._session = aiohttp.ClientSession(headers=self._headers, timeout=self._timeout)
        status, body = await self._send("GET", "/")
        version = str(body.get("version", "")) if isinstance(body, dict) else ""
        if status != 200 or not version:
            raise KongUnavailable(
                f"kong at {self.url}: GET / did not answer as Kong's Admin API does (status {status}); "
                "is this the Admin API address (port 8001 by default)?",
                status,
            )
        numbers = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
        if numbers < MIN_VERSION:
            need = ".".join(map(str, MIN_VERSION))
            raise KongUnavailable(
                f"kong at {self.url}: version {version!r} is too old; meshkit needs >= {need}"
            )
        self.version = version
        return version

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> KongAdmin:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- the verbs

    async def list(self, path: str, *, tags: str | None = None) -> list[dict[str, Any]]:
        """Every entity in a collection, following `next` page by page."""
        query = {"size": str(self._page_size)}
        if tags:
            query["tags"] = tags
        page: str | None = f"{path}?{urlencode(query)}"
        items: list[dict[str, Any]] = []
        while page:
            body = await self._ok("GET", page)
            items.extend(body.get("data") or [])
            page = body.get("next")
        return items

    async def get(self, path: str) -> dict[str, Any] | None:
        status, body = await self._send("GET", path)
        if status == 404:
            return None
        return self._check("GET", path, status, body)

    async def put(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._ok("PUT", path, body)

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._ok("POST", path, body)

    async def delete(self, path: str) -> bool:
        """True when Kong deleted something; a 404 (already gone) is False, not an error."""
        status, body = await self._send("DELETE", path)
        if status == 404:
            return False
        self._check("DELETE", path, status, body)
        return True

    # -- plumbing

    async def _ok(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        status, reply = await self._send(method, path, body)
        return self._check(method, path, status, reply)

    def _check(self, method: str, path: str, status: int, body: Any) -> dict[str, Any]:
        if 200 <= status < 300:
            return body if isinstance(body, dict) else {}
        message = body.get("message", body) if isinstance(body, dict) else body
        error = KongUnavailable if status >= 500 else KongError
        raise error(f"kong at {self.url}: {method} {path.split('?')[0]} answered {status}: {message}", status)

    async def _send(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        if self._session is None:
            raise KongUnavailable(f"kong at {self.url}: client is not started (or closed)")
        data = orjson.dumps(body) if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else None
        try:
            async with self._session.request(
                method, URL(self.url + path, encoded=True), data=data, headers=headers
            ) as resp:
                raw = await resp.read()
                status = resp.status
        except (TimeoutError, aiohttp.ClientError, OSError, RuntimeError) as e:
            reason = str(e) or type(e).__name__
            raise KongUnavailable(
                f"kong at {self.url}: {method} {path.split('?')[0]} failed: {reason}"
            ) from e
        try:
            return status, orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            return status, raw.decode("utf-8", "replace")[:300]
