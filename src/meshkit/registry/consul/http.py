"""The one HTTP session to a Consul agent: the token header, timeouts, and errors mapped.

Every failure to talk to Consul (refused, reset, timed out, a 5xx, a rejected ACL token)
becomes `RegistryUnavailable` with the agent's address in the message, so the cache in
front serves stale reads and the API answers 503. A 400 means Consul refused what we sent
and becomes a ValueError; a 404 is returned to the caller, which knows what it means.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import orjson
from yarl import URL

from meshkit.errors import RegistryUnavailable


class Reply:
    __slots__ = ("body", "index", "status")

    def __init__(self, status: int, body: Any, index: int) -> None:
        self.status, self.body, self.index = status, body, index


def path_part(value: str) -> str:
    """An id or name as one URL path segment (meshkit ids may hold % : @ [ ])."""
    return quote(value, safe="")


class ConsulHttp:
    """JSON over HTTP to one agent, with X-Consul-Token when a token is set."""

    def __init__(self, base: str, *, token: str | None, timeout: float) -> None:
        self.base = base.rstrip("/")
        self._headers = {"X-Consul-Token": token} if token else {}
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    def open(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(headers=self._headers, json_serialize=_dumps)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def call(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: Any = None,
        seconds: float | None = None,
        ok: tuple[int, ...] = (200,),
    ) -> Reply:
        """Send one request; a status outside `ok` and 404 raises (see the module docstring)."""
        if self._session is None:
            raise RegistryUnavailable(f"consul at {self.base}: registry is not started (or closed)")
        url = URL(self.base + path + ("?" + urlencode(query) if query else ""), encoded=True)
        limit = aiohttp.ClientTimeout(total=seconds or self._timeout)
        try:
            async with self._session.request(
                method, url, json=body if body is not None else None, timeout=limit
            ) as resp:
                raw = await resp.read()
                index = int(resp.headers.get("X-Consul-Index", "0") or 0)
                status = resp.status
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as e:
            reason = type(e).__name__ if isinstance(e, asyncio.TimeoutError) else str(e) or type(e).__name__
            raise RegistryUnavailable(f"consul at {self.base}: {method} {path} failed: {reason}") from e
        if status in ok:
            return Reply(status, _loads(raw), index)
        text = raw.decode("utf-8", "replace").strip()[:300]
        if status == 404:
            return Reply(status, text, index)
        if status == 400:
            raise ValueError(f"instance: consul at {self.base} refused {method} {path}: {text}")
        if status in (401, 403):
            raise RegistryUnavailable(
                f"consul at {self.base}: ACL token rejected for {method} {path} ({status} {text}); "
                "set CONSUL_HTTP_TOKEN or pass token="
            )
        raise RegistryUnavailable(f"consul at {self.base}: {method} {path} answered {status}: {text}")


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _loads(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", "replace")
