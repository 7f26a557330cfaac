"""An HTTP client of the control plane's REST API, and how the CLI and sidecars find the plane.

`ControlPlaneClient` mirrors the endpoints under `/api/v1/mesh/v2` one method each, over one
aiohttp session, and turns every refusal into `ControlPlaneError(status, detail)` with the
server's `{"detail": ...}`; a plane that cannot be reached is `ControlPlaneUnreachable`
(status 0). The bearer token goes only into the `Authorization` header: it is never part of
a message, a repr or a log line. `find_control_plane` resolves the URL and token from flags,
then the environment (`MESHKIT_URL`, `MESHKIT_TOKEN`, `MESHKIT_ADMIN_TOKEN`), then the admin
token file that `meshkit serve` writes into its data directory (12-factor style: explicit
beats ambient, ambient beats the default).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from meshkit.plane.auth import ADMIN_TOKEN_FILE
from meshkit.types import HealthCheck

API_PREFIX = "/api/v1/mesh/v2"
DEFAULT_PORT = 8080
DEFAULT_URL = f"http://127.0.0.1:{DEFAULT_PORT}"
DEFAULT_DATA_DIR = Path("~/.meshkit")


class ControlPlaneError(Exception):
    """The control plane refused a request: `status` is the HTTP status, `detail` its reason."""

    def __init__(self, status: int, detail: Any) -> None:
        self.status = status
        self.detail = detail
        super().__init__(status, detail)

    def __str__(self) -> str:
        detail = self.detail if isinstance(self.detail, str) else orjson.dumps(self.detail).decode()
        return f"control plane answered {self.status}: {detail}"


class ControlPlaneUnreachable(ControlPlaneError):
    """No answer at all: connection refused, reset or timed out."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(0, reason)
        self.url = url

    def __str__(self) -> str:
        return f"control plane at {self.url} is unreachable: {self.detail}"


def _params(values: Mapping[str, Any]) -> dict[str, str]:
    """Query parameters without the unset ones; booleans as `true`/`false`."""
    out: dict[str, str] = {}
    for name, value in values.items():
        if value is not None:
            out[name] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return out


def _check_body(check: HealthCheck | Mapping[str, Any] | None) -> dict[str, Any] | None:
    if check is None:
        return None
    body = asdict(check) if isinstance(check, HealthCheck) else dict(check)
    return {k: v for k, v in body.items() if v is not None}


class ControlPlaneClient:
    """One method per REST endpoint; use as `async with ControlPlaneClient(url, token) as plane:`."""

    def __init__(self, base_url: str, token: str | None = None, *, timeout: float = 10.0) -> None:
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url: must be an http:// or https:// URL, got {base_url!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise ValueError(f"timeout: must be a number of seconds > 0, got {timeout!r}")
        root = base_url.rstrip("/")
        root = root.removesuffix(API_PREFIX)
        self.base_url = root
        self._api = root + API_PREFIX
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:  # never the token
        return f"ControlPlaneClient({self.base_url!r}, token={'set' if self._headers else 'none'})"

    @property
    def has_token(self) -> bool:
        return bool(self._headers)

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout, headers=self._headers)
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        raw: bool = False,
        root: bool = False,
    ) -> Any:
        """Call `path` under the API prefix (or the server root) and return the decoded answer."""
        url = (self.base_url if root else self._api) + path
        data = None if json is None else orjson.dumps(json)
        headers = {"Content-Type": "application/json"} if data is not None else None
        try:
            async with self._get_session().request(
                method, url, data=data, params=_params(params or {}), headers=headers
            ) as resp:
                body = await resp.read()
                status = resp.status
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            raise ControlPlaneUnreachable(self.base_url, str(exc) or type(exc).__name__) from None
        if status >= 400:
            raise ControlPlaneError(status, _detail(body))
        if raw:
            return body.decode("utf-8", errors="replace")
        return orjson.loads(body) if body else None

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def __aenter__(self) -> ControlPlaneClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def wait_ready(self, within: float = 10.0, interval: float = 0.1) -> dict[str, Any]:
        """Poll `/health` until the plane answers; raise the last `ControlPlaneUnreachable` on timeout."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + within
        while True:
            try:
                return await self.health()  # type: ignore[no-any-return]
            except ControlPlaneUnreachable:
                if loop.time() >= give_up:
                    raise
            await asyncio.sleep(interval)

    # -- registry

    async def register(
        self,
        service_name: str,
        address: str,
        port: int,
        *,
        tags: Sequence[str] = (),
        metadata: Mapping[str, str] | None = None,
        weight: int | None = None,
        zone: str | None = None,
        version: str | None = None,
        check: HealthCheck | Mapping[str, Any] | None = None,
        ttl: float | None = None,
        service_id: str | None = None,
    ) -> Any:
        body: dict[str, Any] = {
            "service_name": service_name,
            "address": address,
            "port": port,
            "tags": list(tags),
            "metadata": dict(metadata or {}),
        }
        optional = {
            "service_id": service_id,
            "weight": weight,
            "zone": zone,
            "version": version,
            "check": _check_body(check),
            "ttl": ttl,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        return await self.request("POST", "/register", json=body)

    async def deregister(self, service_id: str) -> Any:
        return await self.request("DELETE", f"/deregister/{_segment(service_id)}")

    async def heartbeat(self, service_id: str) -> Any:
        return await self.request("PUT", f"/heartbeat/{_segment(service_id)}")

    async def discover(self, service_name: str, *, use_cache: bool = True) -> Any:
        return await self.request(
            "GET", f"/discover/{_segment(service_name)}", params={"use_cache": use_cache}
        )

    async def instance(self, service_id: str) -> Any:
        return await self.request("GET", f"/instances/{_segment(service_id)}")

    async def call(
        self,
        service_name: str,
        method: str = "GET",
        path: str = "/",
        *,
        headers: Mapping[str, str] | None = None,
        body: Any = None,
        timeout: float = 30.0,  # noqa: ASYNC109 - the /call field, sent to the plane
        retry_count: int | None = None,
    ) -> Any:
        payload = {
            "service_name": service_name,
            "method": method,
            "path": path,
            "headers": dict(headers or {}),
            "body": body,
            "timeout": timeout,
        }
        if retry_count is not None:  # else the plane's configured retry policy decides
            payload["retry_count"] = retry_count
        return await self.request("POST", "/call", json=payload)

    async def topology(self) -> Any:
        return await self.request("GET", "/topology")

    async def health(self) -> Any:
        return await self.request("GET", "/health")

    async def metrics(self) -> str:
        text: str = await self.request("GET", "/metrics", raw=True)
        return text

    # -- configuration

    async def config(self) -> Any:
        return await self.request("GET", "/config")

    async def configure_load_balancer(self, strategy: str) -> Any:
        return await self.request("POST", "/configure/load-balancer", params={"strategy": strategy})

    async def configure_circuit_breaker(
        self, failure_threshold: int | None = None, recovery_timeout: float | None = None
    ) -> Any:
        params = {"failure_threshold": failure_threshold, "recovery_timeout": recovery_timeout}
        return await self.request("POST", "/configure/circuit-breaker", params=params)

    async def configure_retry(
        self,
        max_attempts: int | None = None,
        base_delay: float | None = None,
        max_delay: float | None = None,
        retry_all_5xx: bool | None = None,
    ) -> Any:
        params = {
            "max_attempts": max_attempts,
            "base_delay": base_delay,
            "max_delay": max_delay,
            "retry_all_5xx": retry_all_5xx,
        }
        return await self.request("POST", "/configure/retry", params=params)

    async def configure_health_check(
        self,
        interval: float | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the probe timeout being configured
        unhealthy_threshold: int | None = None,
        healthy_threshold: int | None = None,
    ) -> Any:
        params = {
            "interval": interval,
            "timeout": timeout,
            "unhealthy_threshold": unhealthy_threshold,
            "healthy_threshold": healthy_threshold,
        }
        return await self.request("POST", "/configure/health-check", params=params)

    # -- tokens (admin)

    async def create_token(self, name: str, services: Sequence[str]) -> Any:
        return await self.request("POST", "/tokens", json={"name": name, "services": list(services)})

    async def list_tokens(self) -> Any:
        return await self.request("GET", "/tokens")

    async def revoke_token(self, name: str) -> Any:
        return await self.request("DELETE", f"/tokens/{_segment(name)}")

    # -- traces

    async def traces(
        self,
        service_name: str | None = None,
        operation_name: str | None = None,
        min_duration: float | None = None,
        max_duration: float | None = None,
        error_only: bool = False,
        limit: int = 20,
    ) -> Any:
        params = {
            "service_name": service_name,
            "operation_name": operation_name,
            "min_duration": min_duration,
            "max_duration": max_duration,
            "error_only": error_only or None,
            "limit": limit,
        }
        return await self.request("GET", "/traces", params=params)

    async def trace(self, trace_id: str) -> Any:
        return await self.request("GET", f"/traces/{_segment(trace_id)}")

    async def dependencies(self) -> Any:
        return await self.request("GET", "/dependencies")


def _segment(value: str) -> str:
    """A value placed in a URL path segment: refused when it could change the path."""
    if not isinstance(value, str) or not value or any(c in value for c in "/?#%\\") or value in (".", ".."):
        raise ValueError(f"path segment: must be a non-empty name without / ? # % \\, got {value!r}")
    return value


def _detail(body: bytes) -> Any:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", errors="replace").strip() or "no detail"
    return parsed.get("detail", parsed) if isinstance(parsed, dict) else parsed


@dataclass(frozen=True, slots=True)
class ControlPlaneTarget:
    """Where the control plane is and the token to present; `token_source` says where it was found."""

    url: str
    token: str | None
    token_source: str

    def client(self, *, timeout: float = 10.0) -> ControlPlaneClient:
        return ControlPlaneClient(self.url, self.token, timeout=timeout)


def default_data_dir() -> Path:
    """`MESHKIT_DATA_DIR`, else `~/.meshkit`: where `meshkit serve` keeps its state and admin token."""
    return Path(os.environ.get("MESHKIT_DATA_DIR") or DEFAULT_DATA_DIR).expanduser()


def find_control_plane(
    url: str | None = None, token: str | None = None, data_dir: str | Path | None = None
) -> ControlPlaneTarget:
    """Resolve the plane's URL and token: flags, then environment, then the data directory's admin token."""
    env = os.environ
    resolved_url = url or env.get("MESHKIT_URL") or DEFAULT_URL
    if token:
        return ControlPlaneTarget(resolved_url, token, "--token")
    for name in ("MESHKIT_TOKEN", "MESHKIT_ADMIN_TOKEN"):
        if env.get(name, "").strip():
            return ControlPlaneTarget(resolved_url, env[name].strip(), name)
    path = (Path(data_dir).expanduser() if data_dir is not None else default_data_dir()) / ADMIN_TOKEN_FILE
    try:
        found = path.read_text(encoding="utf-8").strip()
    except OSError:
        found = ""
    if found:
        return ControlPlaneTarget(resolved_url, found, str(path))
    return ControlPlaneTarget(resolved_url, None, "none")
