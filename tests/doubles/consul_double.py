"""A TEST DOUBLE of a Consul agent's HTTP API: a real aiohttp server on 127.0.0.1, not Consul.

No Consul binary can be installed where meshkit's tests run, so the contract tests talk to
this double, built from Consul's documented requests and responses (api-docs: agent/service,
agent/check, agent/health, health, catalog, status, blocking queries, ACL tokens):

- agent/service/register (one Check: HTTP, TCP or TTL; Status, SuccessBeforePassing,
  FailuresBeforeCritical; `replace-existing-checks`), deregister, maintenance;
- agent/check/pass|warn|fail/:check_id for TTL checks (500 for a check without a TTL);
- agent/health/service/id/:id (200 passing, 429 warning, 503 critical, 404 unknown);
- health/service/:name (with `passing`), health/state/any, catalog/services;
- X-Consul-Index on every read, and blocking queries: `index` + `wait` hold the request
  until that endpoint's index passes `index` or `wait` elapses (without Consul's jitter);
- ACL: with `token=` set, requests need X-Consul-Token (or Authorization: Bearer), else 403.

The double runs HTTP and TCP checks itself on their Interval (2xx passing, 429 warning,
anything else critical) and fails TTL checks whose TTL ran out. It does not reap services
after DeregisterCriticalServiceAfter. Faults for tests: `fail_next` (a 5xx), `drop_next`
(the connection is closed without an answer), `stop()`/`restart()` (the port goes dark and
comes back), `reset_index` (indexes go backwards, as after a snapshot restore), `leader`.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import deque
from typing import Any

import aiohttp
from aiohttp import web

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)$")
_UNIT = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_META_KEY = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
NODE = {
    "ID": "0d8c5b1e-0000-4000-8000-000000000001",
    "Node": "double",
    "Address": "127.0.0.1",
    "Datacenter": "dc1",
}


def seconds(value: Any, field: str) -> float:
    match = _DURATION.match(str(value))
    if not match:
        raise web.HTTPBadRequest(text=f"Invalid {field}: time: invalid duration {value!r}")
    return float(match.group(1)) * _UNIT[match.group(2)]


class ConsulDouble:
    """The in-memory agent + server; `await start()` then use `.address` ("127.0.0.1:port")."""

    def __init__(self, *, token: str | None = None, version: str = "1.17.0") -> None:
        self.token = token
        self.version = version
        self.leader = "127.0.0.1:8300"
        self.services: dict[str, dict[str, Any]] = {}
        self.checks: dict[str, dict[str, Any]] = {}  # CheckID -> check, with private "_" fields
        self.index = 10
        self.service_index: dict[str, int] = {}
        self.catalog_index = self.index
        self.checks_index = self.index
        self.requests: list[tuple[str, str]] = []  # (method, path_qs) seen, for assertions
        self._faults: deque[tuple[str, int]] = deque()
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._client: aiohttp.ClientSession | None = None
        self.port = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    # -- lifecycle and faults

    async def start(self) -> None:
        app = web.Application(middlewares=[self._middleware])
        r = app.router
        r.add_get("/v1/agent/self", self._agent_self)
        r.add_get("/v1/status/leader", self._status_leader)
        r.add_put("/v1/agent/service/register", self._register)
        r.add_put("/v1/agent/service/deregister/{id}", self._deregister)
        r.add_put("/v1/agent/service/maintenance/{id}", self._maintenance)
        r.add_put("/v1/agent/check/{verb:pass|warn|fail}/{check_id}", self._ttl_update)
        r.add_get("/v1/agent/health/service/id/{id}", self._agent_health)
        r.add_get("/v1/health/service/{name}", self._health_service)
        r.add_get("/v1/health/state/any", self._health_state)
        r.add_get("/v1/catalog/services", self._catalog_services)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self.port = int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        if self._client is None:
            self._client = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2.0))

    async def stop(self) -> None:
        """The agent goes away: the port refuses connections; state is kept for `restart()`."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def restart(self) -> None:
        await self.start()

    async def close(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self._tasks.clear()
        await self.stop()
        if self._client is not None:
            await self._client.close()

    def fail_next(self, count: int = 1, status: int = 500) -> None:
        self._faults.extend(("status", status) for _ in range(count))

    def drop_next(self, count: int = 1) -> None:
        self._faults.extend(("drop", 0) for _ in range(count))

    def clear_faults(self) -> None:
        self._faults.clear()

    def reset_index(self, to: int = 1) -> None:
        """Every index goes back to `to` (a snapshot restore); later writes count on from there."""
        self.index = self.catalog_index = self.checks_index = to
        self.service_index = dict.fromkeys(self.service_index, to)
        self._wake()

    def set_status(self, service_id: str, status: str, output: str = "") -> None:
        """Force the status of a service's check, as if its probe had just answered."""
        self._set_status(self.checks[f"service:{service_id}"], status, output)

    # -- plumbing

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.method, request.path_qs))
        if self._faults:
            kind, status = self._faults.popleft()
            if kind == "drop":
                if request.transport is not None:
                    request.transport.close()
                raise ConnectionResetError("dropped by the double")
            return web.Response(status=status, text="rpc error: injected by the double")
        if self.token is not None:
            given = request.headers.get("X-Consul-Token") or request.headers.get(
                "Authorization", ""
            ).removeprefix("Bearer ")
            if given != self.token:
                return web.Response(status=403, text="ACL not found" if given else "Permission denied")
        response: web.StreamResponse = await handler(request)
        return response

    def _bump(self, name: str | None, *, catalog: bool = False, checks: bool = False) -> None:
        self.index += 1
        if name is not None:
            self.service_index[name] = self.index
        if catalog:
            self.catalog_index = self.index
        if checks:
            self.checks_index = self.index
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _block(self, request: web.Request, current: Any) -> int:
        """Hold a blocking query until `current()` passes `index` or `wait` runs out."""
        wanted = int(request.query.get("index", "0") or 0)
        if wanted <= 0:
            return int(current())
        wait = min(seconds(request.query.get("wait", "5m"), "wait"), 600.0)
        deadline = time.monotonic() + wait
        while current() <= wanted and (left := deadline - time.monotonic()) > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)
        return int(current())

    @staticmethod
    def _json(body: Any, index: int | None = None, status: int = 200) -> web.Response:
        headers = {"X-Consul-Index": str(index)} if index is not None else {}
        return web.json_response(body, status=status, headers=headers)

    def _service_checks(self, service_id: str) -> list[dict[str, Any]]:
        return [self._public(c) for c in self.checks.values() if c["ServiceID"] == service_id]

    @staticmethod
    def _public(check: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in check.items() if not k.startswith("_")}

    # -- agent

    async def _agent_self(self, request: web.Request) -> web.Response:
        return self._json({"Config": {"Datacenter": "dc1", "NodeName": "double", "Version": self.version}})

    async def _status_leader(self, request: web.Request) -> web.Response:
        return self._json(self.leader)

    async def _register(self, request: web.Request) -> web.Response:
        body = await request.json()
        name = body.get("Name")
        if not name:
            return web.Response(status=400, text="Missing service name")
        sid = body.get("ID") or name
        meta = body.get("Meta") or {}
        for key, value in meta.items():
            if not _META_KEY.match(key) or key.startswith("consul-") or len(str(value)) > 512:
                return web.Response(
                    status=400, text=f"Invalid Service Meta: Couldn't load metadata pair ('{key}')"
                )
        if len(meta) > 64:
            return web.Response(
                status=400,
                text="Invalid Service Meta: Node metadata cannot contain more than 64 key/value pairs",
            )
        weights = body.get("Weights") or {"Passing": 1, "Warning": 1}
        if weights.get("Passing", 0) < 1:
            return web.Response(status=400, text="Passing must be greater than 0")
        check = body.get("Check")
        kinds = [k for k in ("HTTP", "TCP", "TTL") if check and check.get(k)]
        if check is not None and len(kinds) != 1:
            return web.Response(status=400, text="Invalid check: exactly one of HTTP, TCP or TTL is needed")
        old = self.services.get(sid)
        self.services[sid] = {
            "ID": sid, "Service": name, "Tags": list(body.get("Tags") or []), "Address": body.get("Address", ""),
            "Port": int(body.get("Port") or 0), "Meta": dict(meta), "Weights": weights,
        }  # fmt: skip
        if request.query.get("replace-existing-checks") in ("true", "1", "") or old is None:
            for cid in [c for c, v in self.checks.items() if v["ServiceID"] == sid and not c.startswith("_")]:
                self._drop_check(cid)
        if check is not None:
            self._add_check(sid, name, kinds[0], check)
        self._bump(name, catalog=True, checks=True)
        if old is not None and old["Service"] != name:
            self._bump(old["Service"], catalog=True)
        return web.Response(text="")

    def _add_check(self, sid: str, name: str, kind: str, spec: dict[str, Any]) -> None:
        cid = f"service:{sid}"
        check: dict[str, Any] = {
            "Node": "double", "CheckID": cid, "Name": spec.get("Name") or f"Service '{name}' check",
            "Status": spec.get("Status") or "critical", "Notes": "", "Output": "", "ServiceID": sid,
            "ServiceName": name, "Type": kind.lower(), "_spec": spec,
        }  # fmt: skip
        if kind == "TTL":
            check["_ttl"] = seconds(spec["TTL"], "TTL")
            check["_deadline"] = time.monotonic() + check["_ttl"]
        else:
            seconds(spec.get("Interval", ""), "Interval")  # required, and must parse
        self.checks[cid] = check
        self._tasks[cid] = asyncio.get_running_loop().create_task(self._run_check(check, kind))

    def _drop_check(self, cid: str) -> None:
        self.checks.pop(cid, None)
        task = self._tasks.pop(cid, None)
        if task is not None:
            task.cancel()

    def _set_status(self, check: dict[str, Any], status: str, output: str = "") -> None:
        check["Output"] = output
        if check["Status"] != status:
            check["Status"] = status
            self._bump(check["ServiceName"], checks=True)

    async def _run_check(self, check: dict[str, Any], kind: str) -> None:
        spec = check["_spec"]
        if kind == "TTL":
            while True:
                await asyncio.sleep(max(0.01, check["_deadline"] - time.monotonic()))
                if time.monotonic() >= check["_deadline"]:
                    self._set_status(check, "critical", "TTL expired")
                    check["_deadline"] = time.monotonic() + check["_ttl"]
        interval = seconds(spec["Interval"], "Interval")
        need = {
            "passing": int(spec.get("SuccessBeforePassing", 0)),
            "critical": int(spec.get("FailuresBeforeCritical", 0)),
        }
        streak: tuple[str, int] = ("", 0)
        while True:
            status = await self._probe(kind, spec)
            streak = (status, streak[1] + 1) if streak[0] == status else (status, 1)
            if streak[1] > need.get(status, 0) or status == "warning":
                self._set_status(check, status, f"probe said {status}")
            await asyncio.sleep(interval)

    async def _probe(self, kind: str, spec: dict[str, Any]) -> str:
        timeout = seconds(spec.get("Timeout", "10s"), "Timeout")
        try:
            if kind == "TCP":
                host, _, port = spec["TCP"].rpartition(":")
                _, writer = await asyncio.wait_for(
                    asyncio.open_connection(host.strip("[]"), int(port)), timeout
                )
                writer.close()
                return "passing"
            assert self._client is not None
            async with self._client.get(spec["HTTP"], timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                return (
                    "passing" if 200 <= resp.status < 300 else "warning" if resp.status == 429 else "critical"
                )
        except (OSError, TimeoutError, aiohttp.ClientError):
            return "critical"

    async def _deregister(self, request: web.Request) -> web.Response:
        sid = request.match_info["id"]
        svc = self.services.pop(sid, None)
        if svc is None:
            return web.Response(
                status=404,
                text=f'Unknown service ID "{sid}". Ensure that the service ID is passed, not the service name.',
            )
        for cid in [c for c, v in self.checks.items() if v["ServiceID"] == sid]:
            self._drop_check(cid)
        self._bump(svc["Service"], catalog=True, checks=True)
        return web.Response(text="")

    async def _maintenance(self, request: web.Request) -> web.Response:
        sid = request.match_info["id"]
        if sid not in self.services:
            return web.Response(status=404, text=f'Unknown service ID "{sid}"')
        enable = request.query.get("enable")
        if enable not in ("true", "false"):
            return web.Response(status=400, text="Missing value for enable")
        cid, name = f"_service_maintenance:{sid}", self.services[sid]["Service"]
        if enable == "true" and cid not in self.checks:
            self.checks[cid] = {
                "Node": "double", "CheckID": cid, "Name": "Service Maintenance Mode", "Status": "critical",
                "Notes": request.query.get("reason", ""), "Output": "", "ServiceID": sid, "ServiceName": name,
                "Type": "maintenance",
            }  # fmt: skip
            self._bump(name, checks=True)
        elif enable == "false" and self.checks.pop(cid, None) is not None:
            self._bump(name, checks=True)
        return web.Response(text="")

    async def _ttl_update(self, request: web.Request) -> web.Response:
        cid = request.match_info["check_id"]
        check = self.checks.get(cid)
        if check is None:
            return web.Response(status=404, text=f'Unknown check ID "{cid}"')
        if "_ttl" not in check:
            return web.Response(status=500, text=f'CheckID "{cid}" does not have associated TTL')
        status = {"pass": "passing", "warn": "warning", "fail": "critical"}[request.match_info["verb"]]
        check["_deadline"] = time.monotonic() + check["_ttl"]
        self._set_status(check, status, request.query.get("note", ""))
        return web.Response(text="")

    async def _agent_health(self, request: web.Request) -> web.Response:
        sid = request.match_info["id"]
        svc = self.services.get(sid)
        if svc is None:
            return web.Response(status=404, text=f"ServiceId {sid} not found")
        checks = self._service_checks(sid)
        statuses = {c["Status"] for c in checks}
        aggregated = (
            "critical" if "critical" in statuses else "warning" if "warning" in statuses else "passing"
        )
        code = {"passing": 200, "warning": 429, "critical": 503}[aggregated]
        return self._json({"AggregatedStatus": aggregated, "Service": svc, "Checks": checks}, status=code)

    # -- catalog and health (the servers' view)

    async def _health_service(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        index = await self._block(request, lambda: self.service_index.get(name, self.catalog_index))
        serf = {"Node": "double", "CheckID": "serfHealth", "Name": "Serf Health Status", "Status": "passing",
                "ServiceID": "", "ServiceName": ""}  # fmt: skip
        entries = []
        for svc in sorted(self.services.values(), key=lambda s: s["ID"]):
            if svc["Service"] != name:
                continue
            checks = [serf, *self._service_checks(svc["ID"])]
            if "passing" in request.query and any(c["Status"] != "passing" for c in checks):
                continue
            entries.append({"Node": NODE, "Service": svc, "Checks": checks})
        return self._json(entries, index)

    async def _health_state(self, request: web.Request) -> web.Response:
        index = await self._block(request, lambda: self.checks_index)
        return self._json([self._public(c) for c in self.checks.values()], index)

    async def _catalog_services(self, request: web.Request) -> web.Response:
        index = await self._block(request, lambda: self.catalog_index)
        out: dict[str, list[str]] = {"consul": []}
        for svc in self.services.values():
            tags = out.setdefault(svc["Service"], [])
            tags.extend(t for t in svc["Tags"] if t not in tags)
        return self._json(out, index)
