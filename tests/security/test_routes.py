"""Authentication, enumerated from the plane's own OpenAPI spec so a new route cannot slip through.

Every operation with a mutating method (POST, PUT, PATCH, DELETE) in /openapi.json of a real
`meshkit serve` is sent with no token, a wrong token, a malformed Authorization header and, where
the route is the admin's or an instance's owner's, a valid service token for another service;
each must be 401 or 403 (never 2xx, never 5xx), with and without --public-read, and nothing may
change. Every GET is 401 without a token unless it is one of the documented open routes listed
below. A meta-assertion checks the enumeration found the routes known today.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from tests.security.conftest import Figures
from tests.support.plane import API, PlaneProcess, start_plane

MUTATING = ("post", "put", "patch", "delete")
KNOWN_MUTATING = {
    f"POST {API}/register",
    f"DELETE {API}/deregister/{{service_id}}",
    f"PUT {API}/heartbeat/{{service_id}}",
    f"POST {API}/call",
    f"POST {API}/configure/load-balancer",
    f"POST {API}/configure/circuit-breaker",
    f"POST {API}/configure/retry",
    f"POST {API}/configure/health-check",
    f"POST {API}/enqueue",
    f"POST {API}/tokens",
    f"DELETE {API}/tokens/{{name}}",
    "POST /v1/traces",
    "POST /api/v1/mesh/enqueue",
}
# Any valid token may call, enqueue and send spans; the rest belong to the admin or the owner.
ANY_TOKEN = {f"POST {API}/call", f"POST {API}/enqueue", "POST /v1/traces", "POST /api/v1/mesh/enqueue"}
# The GET routes that answer without a token, each documented: readiness (its minimal form is
# checked below), what the dashboard page needs before it logs in, and the API's own docs.
OPEN_GETS_IN_SPEC = {f"GET {API}/health", "GET /dashboard/config"}
OPEN_OUTSIDE_SPEC = [
    "/openapi.json",
    "/docs",
    "/redoc",
    "/dashboard",
    "/dashboard/",
    "/dashboard/static/app.js",
]
OWNER = "owned"
INSTANCE = f"{OWNER}-127.0.0.1-9"
VICTIM_TOKEN = "victim-token"
PATH_VALUES = {"service_id": INSTANCE, "name": VICTIM_TOKEN, "service_name": OWNER, "trace_id": "0" * 32}
BODIES: dict[str, Any] = {
    f"POST {API}/register": {"service_name": OWNER, "address": "127.0.0.1", "port": 9, "tags": ["hijack"]},
    f"POST {API}/call": {"service_name": OWNER, "path": "/"},
    f"POST {API}/enqueue": {"topic": "t", "task": {}},
    "POST /api/v1/mesh/enqueue": {"topic": "t", "task": {}},
    f"POST {API}/tokens": {"name": "intruder", "services": [OWNER]},
    "POST /v1/traces": {"resourceSpans": []},
}
QUERIES = {
    f"POST {API}/configure/load-balancer": {"strategy": "random"},
    f"GET {API}/results": {"topic": "t"},
}
BAD_AUTHORIZATION = [
    None,
    "Bearer wrong-token-wrong-token-0123",
    "Bearer ",
    "Basic YWRtaW46YWRtaW4=",
    "bearer",
    "Token abc",
]


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(label, method, concrete path) for every operation in the spec."""
    for path, item in spec["paths"].items():
        for method in item:
            concrete = re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES.get(m.group(1), "x"), path)
            yield f"{method.upper()} {path}", method.upper(), concrete


async def send(
    session: aiohttp.ClientSession, base: str, label: str, method: str, path: str, authorization: str | None
) -> tuple[int, bytes]:
    headers = {"Authorization": authorization} if authorization is not None else {}
    kwargs: dict[str, Any] = {"params": QUERIES.get(label, {}), "headers": headers}
    if method in ("POST", "PUT", "PATCH"):
        kwargs["json"] = BODIES.get(label, {})
    async with session.request(method, base + path, **kwargs) as resp:
        return resp.status, await resp.read()


async def admin_request(
    session: aiohttp.ClientSession, plane: PlaneProcess, method: str, path: str, **kwargs: Any
) -> Any:
    headers = {"Authorization": f"Bearer {plane.token}"}
    async with session.request(method, plane.url + API + path, headers=headers, **kwargs) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def snapshot(session: aiohttp.ClientSession, plane: PlaneProcess) -> dict[str, Any]:
    """What a refused write could have changed: the owner's instance, the tokens, the settings."""
    return {
        "instances": (await admin_request(session, plane, "GET", f"/discover/{OWNER}"))["instances"],
        "tokens": sorted(t["name"] for t in await admin_request(session, plane, "GET", "/tokens")),
        "config": await admin_request(session, plane, "GET", "/config"),
    }


async def prepare(session: aiohttp.ClientSession, plane: PlaneProcess) -> str:
    """An instance owned by one service token, a token to revoke, and a token for another service."""
    owner = await admin_request(
        session, plane, "POST", "/tokens", json={"name": "owner", "services": [OWNER]}
    )
    headers = {"Authorization": f"Bearer {owner['token']}"}
    body = {"service_name": OWNER, "address": "127.0.0.1", "port": 9}
    async with session.post(plane.url + API + "/register", json=body, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
    await admin_request(session, plane, "POST", "/tokens", json={"name": VICTIM_TOKEN, "services": ["v"]})
    other = await admin_request(
        session, plane, "POST", "/tokens", json={"name": "other", "services": ["other"]}
    )
    return str(other["token"])


@pytest.fixture(scope="module")
def public_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlaneProcess]:
    proc = start_plane(tmp_path_factory.mktemp("public") / "data", "--public-read")
    yield proc
    proc.stop()


async def check_mutating_routes(plane: PlaneProcess, figures: Figures, mode: str) -> None:
    async with aiohttp.ClientSession() as session:
        other = await prepare(session, plane)
        async with session.get(plane.url + "/openapi.json") as resp:
            spec = await resp.json()
        before = await snapshot(session, plane)
        found = [op for op in operations(spec) if op[1].lower() in MUTATING]
        labels = {label for label, _, _ in found}
        assert labels >= KNOWN_MUTATING, f"the spec lost routes: {sorted(KNOWN_MUTATING - labels)}"
        wrong: list[str] = []
        sent = 0
        for label, method, path in found:
            attempts = [(auth, {401}) for auth in BAD_AUTHORIZATION]
            if label not in ANY_TOKEN:
                attempts.append((f"Bearer {other}", {403}))
            for authorization, expected in attempts:
                status, body = await send(session, plane.url, label, method, path, authorization)
                sent += 1
                if status not in expected:
                    wrong.append(f"{label} with {authorization!r}: {status} {body[:200]!r}")
        assert not wrong, "\n".join(wrong)
        assert await snapshot(session, plane) == before
    figures(
        f"security/mutating_routes_refused[{mode}]",
        {"operations": len(found), "new_since_written": len(labels - KNOWN_MUTATING), "requests": sent,
         "refused": sent - len(wrong)},
    )  # fmt: skip


async def test_every_mutating_route_refuses_without_a_valid_token(
    plane: PlaneProcess, figures: Figures
) -> None:
    await check_mutating_routes(plane, figures, "default")


async def test_public_read_opens_no_mutating_route(public_plane: PlaneProcess, figures: Figures) -> None:
    async with aiohttp.ClientSession() as session, session.get(public_plane.url + API + "/topology") as resp:
        assert resp.status == 200  # reads are open here: the mode is on
    await check_mutating_routes(public_plane, figures, "public-read")


async def test_every_get_needs_a_token_but_the_documented_open_ones(
    plane: PlaneProcess, figures: Figures
) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(plane.url + "/openapi.json") as resp:
            spec = await resp.json()
        gets = [op for op in operations(spec) if op[1] == "GET"]
        assert len(gets) >= 15 and {label for label, _, _ in gets} >= OPEN_GETS_IN_SPEC
        wrong = []
        for label, method, path in gets:
            expected = {200} if label in OPEN_GETS_IN_SPEC else {401}
            for authorization in BAD_AUTHORIZATION:
                status, body = await send(session, plane.url, label, method, path, authorization)
                if status not in expected:
                    wrong.append(f"{label} with {authorization!r}: {status} {body[:200]!r}")
        for path in OPEN_OUTSIDE_SPEC:
            async with session.get(plane.url + path) as resp:
                if resp.status != 200:
                    wrong.append(f"GET {path} (documented open): {resp.status}")
        assert not wrong, "\n".join(wrong)
        async with session.get(plane.url + API + "/health") as resp:
            assert await resp.json() == {"status": "healthy"}  # the minimal form: no figures without a token
    figures("security/get_routes", {"operations": len(gets), "open_in_spec": len(OPEN_GETS_IN_SPEC)})
