"""ControlPlaneClient against the real control plane (a subprocess), and find_control_plane."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from meshkit.remote import (
    DEFAULT_URL,
    ControlPlaneClient,
    ControlPlaneError,
    ControlPlaneUnreachable,
    find_control_plane,
)
from tests.conftest import StartUpstream
from tests.support.plane import PlaneProcess, free_port, start_plane


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlaneProcess]:
    proc = start_plane(tmp_path_factory.mktemp("plane") / "data")
    yield proc
    proc.stop()


async def test_register_discover_heartbeat_deregister_round_trip(
    plane: PlaneProcess, upstreams: StartUpstream
) -> None:
    up = await upstreams("a")
    async with ControlPlaneClient(plane.url, plane.token) as client:
        reply = await client.register("rt-svc", "127.0.0.1", up.port, tags=["v1"], metadata={"zone": "a"})
        sid = reply["service_id"]
        assert reply["status"] == "registered"
        assert sid == f"rt-svc-127.0.0.1-{up.port}"
        found = await client.discover("rt-svc", use_cache=False)
        assert [i["id"] for i in found["instances"]] == [sid]
        assert found["instances"][0]["address"] == f"127.0.0.1:{up.port}"
        assert found["instances"][0]["tags"] == ["v1"]
        assert (await client.heartbeat(sid)) == {"status": "ok", "service_id": sid}
        detail = await client.instance(sid)
        assert detail["service_name"] == "rt-svc" and detail["port"] == up.port
        assert (await client.deregister(sid))["status"] == "deregistered"
        assert (await client.discover("rt-svc", use_cache=False))["total"] == 0
        with pytest.raises(ControlPlaneError) as err:
            await client.deregister(sid)
        assert err.value.status == 404
        assert sid in str(err.value.detail)


async def test_call_goes_through_the_plane_to_the_instance(
    plane: PlaneProcess, upstreams: StartUpstream
) -> None:
    up = await upstreams("callee")
    async with ControlPlaneClient(plane.url, plane.token) as client:
        sid = (await client.register("call-svc", "127.0.0.1", up.port))["service_id"]
        try:
            reply = await client.call("call-svc", "GET", "/hello?x=1", timeout=5, retry_count=0)
        finally:
            await client.deregister(sid)
    assert reply["status_code"] == 200
    assert reply["body"] == "callee"
    assert reply["instance_id"] == sid
    assert len(reply["trace_id"]) == 32
    assert up.paths == ["/hello?x=1"]


async def test_refusals_carry_status_and_detail(plane: PlaneProcess) -> None:
    async with ControlPlaneClient(plane.url) as anonymous:
        with pytest.raises(ControlPlaneError) as err:
            await anonymous.register("x-svc", "127.0.0.1", 9)
        assert err.value.status == 401
    async with ControlPlaneClient(plane.url, "not-the-token-at-all") as wrong:
        with pytest.raises(ControlPlaneError) as err:
            await wrong.topology()
        assert err.value.status == 401
    async with ControlPlaneClient(plane.url, plane.token) as client:
        with pytest.raises(ControlPlaneError) as err:
            await client.register("Bad_Name", "127.0.0.1", 9)
        assert err.value.status == 422
        assert "service_name" in str(err.value)
        with pytest.raises(ControlPlaneError) as err:
            await client.configure_load_balancer("fastest")
        assert err.value.status in (400, 422)


async def test_token_never_appears_in_repr_or_errors(plane: PlaneProcess) -> None:
    client = ControlPlaneClient(plane.url, plane.token)
    try:
        assert plane.token not in repr(client)
        with pytest.raises(ControlPlaneError) as err:
            await client.deregister("nobody-127.0.0.1-1")
        assert plane.token not in str(err.value)
    finally:
        await client.close()


async def test_unreachable_plane_is_status_zero() -> None:
    async with ControlPlaneClient(f"http://127.0.0.1:{free_port()}", "t" * 20, timeout=2) as client:
        with pytest.raises(ControlPlaneUnreachable) as err:
            await client.health()
        assert err.value.status == 0
        assert "unreachable" in str(err.value)
        with pytest.raises(ControlPlaneUnreachable):
            await client.wait_ready(within=0.3, interval=0.05)


async def test_config_metrics_tokens_and_traces(plane: PlaneProcess) -> None:
    async with ControlPlaneClient(plane.url + "/api/v1/mesh/v2/", plane.token) as client:  # prefix tolerated
        assert (await client.configure_load_balancer("round_robin"))["strategy"] == "round_robin"
        breaker = await client.configure_circuit_breaker(failure_threshold=7)
        assert breaker["failure_threshold"] == 7
        retry = await client.configure_retry(max_attempts=2)
        assert retry["max_attempts"] == 2
        config = await client.config()
        assert config["load_balancer"]["strategy"] == "round_robin"
        assert config["circuit_breaker"]["failure_threshold"] == 7
        assert "# TYPE" in await client.metrics()
        created = await client.create_token("rt-token", ["orders"])
        assert created["token"].startswith("mks_")
        assert "rt-token" in [t["name"] for t in await client.list_tokens()]
        await client.revoke_token("rt-token")
        assert "rt-token" not in [t["name"] for t in await client.list_tokens()]
        assert isinstance(await client.traces(service_name="nobody", limit=5), list)
        assert isinstance(await client.dependencies(), list)
        health = await client.health()
        assert health["status"] in ("healthy", "degraded", "unhealthy")


async def test_path_segments_are_checked_before_sending() -> None:
    client = ControlPlaneClient("http://127.0.0.1:1")
    for bad in ("../tokens", "a/b", "x?y", "", "%2e"):
        with pytest.raises(ValueError, match=r"^path segment"):
            await client.deregister(bad)


def test_constructor_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match=r"^base_url"):
        ControlPlaneClient("127.0.0.1:8080")
    with pytest.raises(ValueError, match=r"^timeout"):
        ControlPlaneClient("http://x", timeout=0)


def test_find_control_plane_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MESHKIT_URL", "MESHKIT_TOKEN", "MESHKIT_ADMIN_TOKEN", "MESHKIT_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert find_control_plane().url == DEFAULT_URL
    assert find_control_plane().token is None
    (tmp_path / "admin.token").write_text("file-token-0123456789\n")
    from_file = find_control_plane(data_dir=tmp_path)
    assert (from_file.token, from_file.token_source) == (
        "file-token-0123456789",
        str(tmp_path / "admin.token"),
    )
    monkeypatch.setenv("MESHKIT_DATA_DIR", str(tmp_path))
    assert find_control_plane().token == "file-token-0123456789"
    monkeypatch.setenv("MESHKIT_ADMIN_TOKEN", "admin-env-token")
    assert find_control_plane(data_dir=tmp_path).token == "admin-env-token"
    monkeypatch.setenv("MESHKIT_TOKEN", "service-env-token")
    monkeypatch.setenv("MESHKIT_URL", "http://plane:9000")
    target = find_control_plane(data_dir=tmp_path)
    assert (target.url, target.token, target.token_source) == (
        "http://plane:9000",
        "service-env-token",
        "MESHKIT_TOKEN",
    )
    flagged = find_control_plane("http://flag:1", "flag-token", tmp_path)
    assert (flagged.url, flagged.token) == ("http://flag:1", "flag-token")
