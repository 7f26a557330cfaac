"""EtcdClient: etcd v3 through its JSON gateway, failing over between the cluster's members.

etcd serves its gRPC API as JSON over HTTP too (`/v3/kv/range`, `/v3/kv/txn`, `/v3/watch`,
`/v3/lease/grant`, ...; keys and values base64). meshkit speaks that gateway with aiohttp,
which it already uses on the data path, rather than through aetcd: aetcd binds one client
to one host:port and applies no deadline to its watch stream, while a registry on a cluster
must move to another member when one dies and must give up within a bounded time when the
cluster has lost its quorum. Here every call has a total deadline (`timeout`) shared across
the members it tries: a refused connection moves on at once, a member that accepts but
cannot answer (it has no leader) costs its share of the deadline. When no member answers,
the call raises `RegistryUnavailable` naming the endpoints, which the API maps to 503.
Watches carry etcd's `hasleader` metadata (what clientv3's `WithRequireLeader` sends), so a
member cut off from the quorum cancels them instead of leaving them silently idle.
"""

from __future__ import annotations

import base64
import contextlib
import time
from collections.abc import AsyncGenerator, Sequence
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from meshkit.errors import RegistryUnavailable

Endpoint = tuple[str, int]
MIN_VERSION = (3, 4)
REQUIRE_LEADER = {"Grpc-Metadata-hasleader": "true"}
URL_FORMAT = "etcd://host:port[,host:port...]"


def parse_endpoints(text: str) -> list[Endpoint]:
    """`host:port,host:port` (IPv6 hosts in brackets) as a list; ValueError naming `registry`."""
    endpoints: list[Endpoint] = []
    for part in text.removeprefix("etcd://").rstrip("/").split(","):
        parsed = urlsplit(f"//{part.strip()}")
        try:
            port = parsed.port
        except ValueError:
            port = None
        if not parsed.hostname or port is None or parsed.path or parsed.username:
            raise ValueError(f"registry: bad etcd endpoint {part!r}; expected {URL_FORMAT}")
        endpoints.append((parsed.hostname, port))
    return endpoints


class EtcdRequestFailed(RuntimeError):
    """etcd answered, and refused the request (not an availability problem)."""


def b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def unb64(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


def prefix_end(prefix: bytes) -> bytes:
    """The first key after every key starting with `prefix` (etcd's range_end for a prefix)."""
    return prefix[:-1] + bytes([prefix[-1] + 1])


def format_endpoints(endpoints: Sequence[Endpoint]) -> str:
    return ",".join(f"{h}:{p}" for h, p in endpoints)


class EtcdClient:
    """A pooled HTTP client for one etcd cluster; see the module docstring."""

    def __init__(self, endpoints: Sequence[Endpoint], *, timeout: float = 5.0) -> None:
        if not endpoints:
            raise ValueError("endpoints: need at least one host:port")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise ValueError(f"timeout: must be a number of seconds > 0, got {timeout!r}")
        self.endpoints = list(endpoints)
        self.timeout = float(timeout)
        self.revision = 0  # the highest header revision seen
        self._current = 0
        self._session: aiohttp.ClientSession | None = None

    @property
    def current(self) -> Endpoint:
        """The member calls go to first (the last one that answered)."""
        return self.endpoints[self._current]

    @property
    def where(self) -> str:
        return f"etcd at {format_endpoints(self.endpoints)}"

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=256, enable_cleanup_closed=True)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def check_version(self) -> str:
        """The server version of the first member that answers; refuses etcd older than 3.4."""
        errors: list[str] = []
        for host, port in self.endpoints:
            url = f"http://{host}:{port}/version"
            try:
                async with self._http().get(url, timeout=aiohttp.ClientTimeout(total=self.timeout)) as r:
                    body = await r.read()
                    version = str(orjson.loads(body).get("etcdserver", "")) if r.status == 200 else ""
            except (TimeoutError, aiohttp.ClientError, orjson.JSONDecodeError, AttributeError) as e:
                errors.append(f"{host}:{port}: {_describe(e)}")
                continue
            parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
            if len(parts) < 2:
                raise RegistryUnavailable(f"etcd at {host}:{port}: does not look like etcd (GET /version)")
            if parts < MIN_VERSION:
                raise RegistryUnavailable(f"etcd at {host}:{port} is version {version}; meshkit needs >= 3.4")
            return version
        raise RegistryUnavailable(f"{self.where} unreachable: {'; '.join(errors)}")

    # -- unary calls

    async def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST `body` to `path` on a member that answers within the deadline; the JSON reply."""
        deadline = time.monotonic() + self.timeout
        data = orjson.dumps(body)
        errors: list[str] = []
        n = len(self.endpoints)
        for attempt in range(n):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            index = (self._current + attempt) % n if attempt else self._current
            host, port = self.endpoints[index]
            share = remaining / (n - attempt)
            try:
                reply = await self._post(f"http://{host}:{port}{path}", data, share)
            except _MemberFailed as e:
                errors.append(f"{host}:{port}: {e}")
                continue
            self._current = index
            self._seen(reply.get("header"))
            return reply
        self._current = (self._current + 1) % n
        raise RegistryUnavailable(f"{self.where} unavailable: {'; '.join(errors) or 'deadline exceeded'}")

    async def _post(self, url: str, data: bytes, budget: float) -> dict[str, Any]:
        try:
            async with self._http().post(url, data=data, timeout=aiohttp.ClientTimeout(total=budget)) as r:
                raw = await r.read()
                status = r.status
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            raise _MemberFailed(_describe(e)) from e
        try:
            reply: dict[str, Any] = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise _MemberFailed(f"HTTP {status}, not JSON") from None
        if status >= 500:
            raise _MemberFailed(str(reply.get("error") or reply.get("message") or f"HTTP {status}"))
        if status != 200:
            raise EtcdRequestFailed(f"etcd refused {url.rsplit('/v3', 1)[-1]}: {reply.get('error', status)}")
        return reply

    def _seen(self, header: dict[str, Any] | None) -> None:
        if header is not None:
            revision = int(header.get("revision", 0))
            if revision > self.revision:
                self.revision = revision

    # -- the calls the registry makes

    async def range(self, key: bytes, end: bytes | None = None) -> tuple[list[dict[str, Any]], int]:
        """(kvs, header revision); linearizable, so an acknowledged write is always seen."""
        body: dict[str, Any] = {"key": b64(key)}
        if end is not None:
            body["range_end"] = b64(end)
        reply = await self.call("/v3/kv/range", body)
        return reply.get("kvs", []), int(reply["header"]["revision"])

    async def txn(
        self, compare: list[dict[str, Any]], success: list[dict[str, Any]], failure: list[dict[str, Any]]
    ) -> dict[str, Any]:
        return await self.call("/v3/kv/txn", {"compare": compare, "success": success, "failure": failure})

    async def grant(self, ttl: float) -> int:
        reply = await self.call("/v3/lease/grant", {"TTL": max(1, int(-(-ttl // 1)))})
        return int(reply["ID"])

    async def keepalive_once(self, lease: int) -> int:
        """Refresh `lease`; its new TTL, or 0 when it has already expired."""
        reply = await self.call("/v3/lease/keepalive", {"ID": str(lease)})
        return int(reply.get("result", {}).get("TTL", 0))

    async def revoke(self, lease: int) -> None:
        with contextlib.suppress(EtcdRequestFailed):  # already gone
            await self.call("/v3/lease/revoke", {"ID": str(lease)})

    async def watch(
        self, key: bytes, end: bytes, start_revision: int
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Watch responses for [key, end) from `start_revision`, from one member, until its stream ends.

        Members that refuse the watch are skipped; once one has accepted it, a broken stream
        raises RegistryUnavailable and the caller resumes from the last revision it saw (etcd
        replays the events since then from its history), so no change is missed or repeated.
        """
        create = {"key": b64(key), "range_end": b64(end), "start_revision": str(start_revision)}
        data = orjson.dumps({"create_request": create})
        n = len(self.endpoints)
        errors: list[str] = []
        for attempt in range(n):
            index = (self._current + attempt) % n
            host, port = self.endpoints[index]
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.timeout / n)
            accepted = False
            try:
                async with self._http().post(
                    f"http://{host}:{port}/v3/watch", data=data, headers=REQUIRE_LEADER, timeout=timeout
                ) as r:
                    if r.status != 200:
                        raise _MemberFailed(f"HTTP {r.status}")
                    buffer = b""
                    async for chunk in r.content.iter_any():
                        buffer += chunk
                        while b"\n" in buffer:
                            line, buffer = buffer.split(b"\n", 1)
                            if line.strip():
                                message = self._watch_message(line)
                                if not accepted:
                                    accepted = True
                                    self._current = index
                                yield message
                    raise _MemberFailed("watch stream ended")
            except (TimeoutError, _MemberFailed, aiohttp.ClientError, OSError) as e:
                errors.append(f"{host}:{port}: {_describe(e)}")
                if accepted:
                    break
        self._current = (self._current + 1) % n
        raise RegistryUnavailable(f"{self.where}: watch failed: {'; '.join(errors)}")

    def _watch_message(self, line: bytes) -> dict[str, Any]:
        message = orjson.loads(line)
        if "error" in message:
            raise _MemberFailed(str(message["error"].get("message", message["error"])))
        result: dict[str, Any] = message.get("result", {})
        self._seen(result.get("header"))
        return result


class _MemberFailed(Exception):
    """One member could not serve a call: try the next."""


def _describe(e: BaseException) -> str:
    if isinstance(e, TimeoutError):
        return "timed out"
    return str(e) or type(e).__name__
