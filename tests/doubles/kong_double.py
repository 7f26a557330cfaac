"""A TEST DOUBLE of Kong's Admin API: a real aiohttp server on 127.0.0.1, not Kong.

Kong cannot be installed where meshkit's tests run, so the contract tests talk to this
double, built from the Admin API's documented requests and responses:

- `GET /` with `version`; services, routes, upstreams as collections: `GET /{c}` pages of
  `{"data": [...], "next": "/{c}?offset=...&size=N" | null, "offset"}` (with `size`,
  `offset`, `tags` filters), `POST /{c}`, `GET|PUT|PATCH|DELETE /{c}/{name or id}`; PUT is an
  upsert by name; `PUT /services/{service}/routes/{route}`;
- targets: `GET|POST /upstreams/{u}/targets`, `DELETE /upstreams/{u}/targets/{host:port or id}`;
- ids are UUIDs, `created_at`/`updated_at` are epoch seconds, every entity has `tags`;
  defaults are filled in (e.g. the whole `healthchecks` tree of an upstream);
- errors as Kong shapes them: 404 `{"message": "Not found"}`, 409 unique violations,
  400 schema and foreign-key violations (a service that routes still use cannot go);
- `Kong-Admin-Token` checked when `token=` is set (401 otherwise).

Faults for tests: `fail_next(count, status, writes_only=)` answers 5xx, `stop()`/`restart()` take the
port away and back; `requests` records what was asked.
"""

from __future__ import annotations

import copy
import time
import uuid
from collections import deque
from typing import Any

from aiohttp import web

COLLECTIONS = ("services", "routes", "upstreams")
ACTIVE_DEFAULTS = {
    "type": "http", "http_path": "/", "timeout": 1, "concurrency": 10, "https_verify_certificate": True,
    "healthy": {"interval": 0, "successes": 0, "http_statuses": [200, 302]},
    "unhealthy": {"interval": 0, "http_failures": 0, "tcp_failures": 0, "timeouts": 0,
                  "http_statuses": [429, 404, 500, 501, 502, 503, 504, 505]},
}  # fmt: skip
DEFAULTS: dict[str, dict[str, Any]] = {
    "services": {"protocol": "http", "port": 80, "path": None, "retries": 5, "connect_timeout": 60000,
                 "write_timeout": 60000, "read_timeout": 60000, "enabled": True, "tags": None},
    "routes": {"protocols": ["http", "https"], "methods": None, "hosts": None, "paths": None, "strip_path": True,
               "preserve_host": False, "regex_priority": 0, "https_redirect_status_code": 426, "tags": None},
    "upstreams": {"algorithm": "round-robin", "slots": 10000, "hash_on": "none", "tags": None,
                  "healthchecks": {"active": ACTIVE_DEFAULTS, "passive": {"type": "http"}, "threshold": 0}},
}  # fmt: skip


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        out[key] = (
            merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


def not_found() -> web.Response:
    return web.json_response({"message": "Not found"}, status=404)


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
        return True
    except ValueError:
        return False


class KongDouble:
    """The in-memory gateway config; `await start()`, then `.url` ("http://127.0.0.1:port")."""

    def __init__(self, *, token: str | None = None, version: str = "3.4.2") -> None:
        self.token = token
        self.version = version
        self.entities: dict[str, dict[str, dict[str, Any]]] = {c: {} for c in COLLECTIONS}  # by id
        self.targets: dict[str, dict[str, Any]] = {}  # by id
        self.requests: list[tuple[str, str]] = []
        self._faults: deque[tuple[int, bool]] = deque()
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application(middlewares=[self._middleware])
        r = app.router
        r.add_get("/", self._root)
        r.add_put("/services/{service}/routes/{key}", self._put_nested_route)
        r.add_route("*", "/upstreams/{upstream}/targets", self._targets)
        r.add_delete("/upstreams/{upstream}/targets/{key}", self._delete_target)
        r.add_route("*", "/{coll:services|routes|upstreams}", self._collection)
        r.add_route("*", "/{coll:services|routes|upstreams}/{key}", self._entity)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self.port = int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def restart(self) -> None:
        await self.start()

    def fail_next(self, count: int = 1, status: int = 500, *, writes_only: bool = False) -> None:
        """The next `count` requests (or only writes: PUT, POST, PATCH, DELETE) answer `status`."""
        self._faults.extend([(status, writes_only)] * count)

    def named(self, coll: str, name: str) -> dict[str, Any] | None:
        return next((e for e in self.entities[coll].values() if e.get("name") == name), None)

    def targets_of(self, upstream: str) -> dict[str, int]:
        up = self.named("upstreams", upstream)
        return {
            t["target"]: t["weight"] for t in self.targets.values() if up and t["upstream"]["id"] == up["id"]
        }

    # -- plumbing

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.method, request.path_qs))
        if self.token is not None and request.headers.get("Kong-Admin-Token") != self.token:
            return web.json_response(
                {"message": "Invalid credentials. Token or User credentials required"}, status=401
            )
        if self._faults and (request.method != "GET" or not self._faults[0][1]):
            status, _ = self._faults.popleft()
            return web.json_response({"message": "An unexpected error occurred"}, status=status)
        response: web.StreamResponse = await handler(request)
        return response

    def _find(self, coll: str, key: str) -> dict[str, Any] | None:
        found = self.entities[coll].get(key)
        return found if found is not None else self.named(coll, key)

    def _page(self, request: web.Request, items: list[dict[str, Any]]) -> web.Response:
        size = int(request.query.get("size", "100"))
        if not 1 <= size <= 1000:
            return web.json_response({"message": "size must be between 1 and 1000"}, status=400)
        tags = request.query.get("tags")
        if tags:
            wanted = tags.split(",")
            items = [i for i in items if set(wanted) <= set(i.get("tags") or [])]
        items.sort(key=lambda i: (i["created_at"], i["id"]))
        start = int(request.query.get("offset", "0") or 0)
        page = items[start : start + size]
        more = start + size < len(items)
        body: dict[str, Any] = {"data": page, "next": None}
        if more:
            body["offset"] = str(start + size)
            query = f"offset={start + size}&size={size}" + (f"&tags={tags}" if tags else "")
            body["next"] = f"{request.path}?{query}"
        return web.json_response(body)

    def _unique(self, coll: str, name: str | None, own_id: str | None) -> web.Response | None:
        other = self.named(coll, name) if name else None
        if other is not None and other["id"] != own_id:
            return web.json_response(
                {"code": 5, "name": "unique constraint violation", "fields": {"name": name},
                 "message": f"UNIQUE violation detected on '{{name=\"{name}\"}}'"},
                status=409,
            )  # fmt: skip
        return None

    def _validate(self, coll: str, body: dict[str, Any]) -> web.Response | None:
        errors: dict[str, str] = {}
        if coll == "services" and not body.get("host") and not body.get("url"):
            errors["host"] = "required field missing"
        if coll == "upstreams" and not body.get("name"):
            errors["name"] = "required field missing"
        if coll == "routes":
            if not (body.get("paths") or body.get("hosts") or body.get("methods")):
                errors["@entity"] = (
                    "must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' when 'protocols' is 'http'"
                )
            service = (body.get("service") or {}).get("id")
            if service is not None and service not in self.entities["services"]:
                return web.json_response(
                    {"code": 4, "name": "foreign key violation", "message": f"the foreign key '{{id=\"{service}\"}}' does not reference an existing 'services' entity."},
                    status=400,
                )  # fmt: skip
        if errors:
            return web.json_response({"code": 2, "name": "schema violation", "fields": errors,
                                      "message": f"schema violation ({errors})"}, status=400)  # fmt: skip
        return None

    def _store(self, coll: str, body: dict[str, Any], existing: dict[str, Any] | None) -> dict[str, Any]:
        now = int(time.time())
        entity = merge(DEFAULTS[coll], body)
        entity["id"] = existing["id"] if existing else str(uuid.uuid4())
        entity["created_at"] = existing["created_at"] if existing else now
        entity["updated_at"] = now
        self.entities[coll][entity["id"]] = entity
        return entity

    async def _write(
        self, request: web.Request, coll: str, key: str | None, extra: dict[str, Any]
    ) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"message": "Cannot parse JSON body"}, status=400)
        body = {**body, **extra}
        existing = self._find(coll, key) if key else None
        if request.method == "PUT" and key and not is_uuid(key):
            body["name"] = key
        if request.method == "PATCH":
            if existing is None:
                return not_found()
            body = merge(
                {k: v for k, v in existing.items() if k not in ("id", "created_at", "updated_at")}, body
            )
        if (error := self._unique(coll, body.get("name"), existing["id"] if existing else None)) is not None:
            return error
        if (error := self._validate(coll, body)) is not None:
            return error
        entity = self._store(coll, body, existing)
        return web.json_response(entity, status=201 if request.method == "POST" else 200)

    # -- handlers

    async def _root(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"version": self.version, "tagline": "Welcome to kong", "hostname": "double"}
        )

    async def _collection(self, request: web.Request) -> web.Response:
        coll = request.match_info["coll"]
        if request.method == "GET":
            return self._page(request, list(self.entities[coll].values()))
        if request.method == "POST":
            return await self._write(request, coll, None, {})
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "POST"])

    async def _entity(self, request: web.Request) -> web.Response:
        coll, key = request.match_info["coll"], request.match_info["key"]
        if request.method == "GET":
            found = self._find(coll, key)
            return web.json_response(found) if found is not None else not_found()
        if request.method in ("PUT", "PATCH"):
            return await self._write(request, coll, key, {})
        if request.method == "DELETE":
            return self._delete(coll, key)
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "PUT", "PATCH", "DELETE"])

    def _delete(self, coll: str, key: str) -> web.Response:
        found = self._find(coll, key)
        if found is None:
            return web.Response(status=204)  # Kong answers 204 for an entity that is not there
        if coll == "services" and any(
            (r.get("service") or {}).get("id") == found["id"] for r in self.entities["routes"].values()
        ):
            return web.json_response(
                {"code": 4, "name": "foreign key violation", "message": "an existing 'routes' entity references this 'services' entity"},
                status=400,
            )  # fmt: skip
        if coll == "upstreams":  # targets go with their upstream
            self.targets = {i: t for i, t in self.targets.items() if t["upstream"]["id"] != found["id"]}
        del self.entities[coll][found["id"]]
        return web.Response(status=204)

    async def _put_nested_route(self, request: web.Request) -> web.Response:
        service = self._find("services", request.match_info["service"])
        if service is None:
            return not_found()
        return await self._write(
            request, "routes", request.match_info["key"], {"service": {"id": service["id"]}}
        )

    async def _targets(self, request: web.Request) -> web.Response:
        up = self._find("upstreams", request.match_info["upstream"])
        if up is None:
            return not_found()
        if request.method == "GET":
            return self._page(request, [t for t in self.targets.values() if t["upstream"]["id"] == up["id"]])
        if request.method != "POST":
            raise web.HTTPMethodNotAllowed(request.method, ["GET", "POST"])
        body = await request.json()
        target, weight = body.get("target"), body.get("weight", 100)
        if not isinstance(target, str) or ":" not in target:
            return web.json_response({"code": 2, "name": "schema violation", "fields": {"target": "invalid target"},
                                      "message": "schema violation (target: invalid target)"}, status=400)  # fmt: skip
        if not isinstance(weight, int) or not 0 <= weight <= 65535:
            return web.json_response({"code": 2, "name": "schema violation", "fields": {"weight": "value should be between 0 and 65535"},
                                      "message": "schema violation (weight: value should be between 0 and 65535)"}, status=400)  # fmt: skip
        if target in self.targets_of(up["name"]):
            return web.json_response({"code": 5, "name": "unique constraint violation",
                                      "message": f"UNIQUE violation detected on '{{target=\"{target}\",upstream={{id=\"{up['id']}\"}}}}'"},
                                     status=409)  # fmt: skip
        now = time.time()
        entity = {"id": str(uuid.uuid4()), "created_at": now, "updated_at": now, "upstream": {"id": up["id"]},
                  "target": target, "weight": weight, "tags": body.get("tags")}  # fmt: skip
        self.targets[entity["id"]] = entity
        return web.json_response(entity, status=201)

    async def _delete_target(self, request: web.Request) -> web.Response:
        up = self._find("upstreams", request.match_info["upstream"])
        key = request.match_info["key"]
        found = next(
            (
                t
                for t in self.targets.values()
                if up and t["upstream"]["id"] == up["id"] and key in (t["id"], t["target"])
            ),
            None,
        )
        if found is None:
            return not_found()
        del self.targets[found["id"]]
        return web.Response(status=204)
