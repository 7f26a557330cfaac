"""Bearer tokens: 401 without one, 403 for what a token may not do, ownership of instances."""

from __future__ import annotations

import logging

import pytest

from tests.plane.api.conftest import ADMIN, Api, StartApi

WRITES = [
    ("POST", "/register", {"json": {"service_name": "a", "address": "127.0.0.1", "port": 1}}),
    ("DELETE", "/deregister/a-127.0.0.1-1", {}),
    ("PUT", "/heartbeat/a-127.0.0.1-1", {}),
    ("POST", "/call", {"json": {"service_name": "a"}}),
    ("POST", "/enqueue", {"json": {"topic": "t", "task": {}}}),
    ("POST", "/configure/load-balancer?strategy=random", {}),
    ("POST", "/configure/circuit-breaker", {}),
    ("POST", "/configure/retry", {}),
    ("POST", "/configure/health-check", {}),
    ("POST", "/tokens", {"json": {"name": "x", "services": ["a"]}}),
    ("GET", "/tokens", {}),
    ("DELETE", "/tokens/x", {}),
]
READS = [
    "/discover/a",
    "/topology",
    "/metrics",
    "//metrics",
    "/config",
    "/traces",
    "/dependencies",
    "/instances/a",
]


@pytest.mark.parametrize("token", [None, "wrong-token-wrong-token", ""])
async def test_every_write_needs_a_valid_token(api: Api, token: str | None) -> None:
    for method, path, kwargs in WRITES:
        code, body = await api.request(method, path, token=token, **kwargs)
        assert code == 401, (method, path, body)
        assert "bearer token" in body["detail"]
    code, found = await api.request("GET", "/discover/a")
    assert found["total"] == 0  # nothing was registered


async def test_reads_need_a_token_unless_public_read(start_api: StartApi, tmp_path) -> None:
    closed = await start_api()
    for path in READS:
        code, _ = await closed.request("GET", path, token=None)
        assert code == 401, path
    code, body = await closed.request("GET", "/health", token=None)
    assert code == 200 and body == {"status": "healthy"}  # readiness stays open, figures do not
    await closed.stop()
    public = await start_api(public_read=True, data_dir=tmp_path / "public")
    for path in READS:
        code, _ = await public.request("GET", path, token=None)
        assert code in (200, 404), path
    code, body = await public.request("GET", "/health", token=None)
    assert code == 200 and "health_score" in body
    code, _ = await public.request(
        "POST", "/register", token=None, json={"service_name": "a", "address": "x", "port": 1}
    )
    assert code == 401  # public reads only


async def test_service_token_manages_only_its_services_and_its_own_instances(api: Api) -> None:
    users = await api.service_token("users-team", ["users"])
    other = await api.service_token("other-team", ["users", "orders"])
    code, _ = await api.register("users", 9001, token=users)
    assert code == 200
    code, body = await api.register("orders", 9002, token=users)
    assert code == 403 and "users-team" in body["detail"]
    # same service, another owner: may not overwrite, deregister or heartbeat it
    code, _ = await api.register("users", 9001, token=other, tags=["hijack"])
    assert code == 403
    for method, path in (
        ("DELETE", "/deregister/users-127.0.0.1-9001"),
        ("PUT", "/heartbeat/users-127.0.0.1-9001"),
    ):
        code, _ = await api.request(method, path, token=other)
        assert code == 403
    code, found = await api.request("GET", "/discover/users")
    assert (
        found["instances"][0]["tags"] == []
        and found["instances"][0]["metadata"]["meshkit.owner"] == "users-team"
    )
    # service tokens may not configure or manage tokens
    for method, path in (("POST", "/configure/load-balancer?strategy=random"), ("GET", "/tokens")):
        code, _ = await api.request(method, path, token=users)
        assert code == 403
    # the owner, and the admin, may
    code, _ = await api.request("PUT", "/heartbeat/users-127.0.0.1-9001", token=users)
    assert code == 200
    code, _ = await api.request("DELETE", "/deregister/users-127.0.0.1-9001", token=users)
    assert code == 200
    await api.register("users", 9003, token=users)
    code, _ = await api.request("DELETE", "/deregister/users-127.0.0.1-9003", token=ADMIN)
    assert code == 200


async def test_the_owner_key_cannot_be_forged(api: Api) -> None:
    users = await api.service_token("users-team", ["users"])
    code, body = await api.register("users", 9001, token=users, metadata={"meshkit.owner": "admin"})
    assert code == 422 and "meshkit.owner" in body["detail"]


async def test_tokens_created_listed_without_secret_and_revoked(api: Api) -> None:
    code, created = await api.request("POST", "/tokens", json={"name": "ci", "services": ["b", "a"]})
    assert code == 200 and created["name"] == "ci" and created["services"] == ["a", "b"]
    assert created["token"].startswith("mks_")
    code, body = await api.request("POST", "/tokens", json={"name": "ci", "services": ["a"]})
    assert code == 409
    code, listed = await api.request("GET", "/tokens")
    assert [t["name"] for t in listed] == ["ci"] and "token" not in listed[0] and "sha256" not in listed[0]
    code, _ = await api.register("a", 1, token=created["token"])
    assert code == 200
    code, body = await api.request("DELETE", "/tokens/ci")
    assert code == 200 and body == {"status": "revoked", "name": "ci"}
    code, _ = await api.register("a", 2, token=created["token"])
    assert code == 401
    code, _ = await api.request("DELETE", "/tokens/ci")
    assert code == 404


async def test_the_callers_token_is_not_forwarded(api: Api, upstreams) -> None:
    seen: list[dict[str, str]] = []

    async def record(request):  # type: ignore[no-untyped-def]
        from aiohttp import web

        seen.append(dict(request.headers))
        return web.Response(text="ok")

    up = await upstreams("h", record)
    await api.register("hdr", up.port)
    body = {
        "service_name": "hdr",
        "headers": {"X-Keep": "1", "X-Leak": f"Bearer {ADMIN}", "Connection": "close"},
    }
    code, result = await api.request("POST", "/call", json=body, headers={"X-Not-In-Body": "1"})
    assert code == 200, result
    (headers,) = seen
    lowered = {k.lower(): v for k, v in headers.items()}
    assert lowered["x-keep"] == "1"
    assert "x-leak" not in lowered and "authorization" not in lowered and "x-not-in-body" not in lowered
    assert ADMIN not in str(headers)


async def test_tokens_do_not_reach_the_logs(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    created = await api.service_token("log-check", ["a"])
    await api.register("a", 1, token=created)
    await api.request("GET", "/topology", token="not-a-real-token-xyz")
    text = caplog.text
    assert ADMIN not in text and created not in text
