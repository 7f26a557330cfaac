"""configure/*: the seed's shapes, validation, persistence across restarts, and effect on existing instances."""

from __future__ import annotations

import asyncio

from tests.plane.api.conftest import Api, StartApi
from tests.support.servers import status


async def test_configure_shapes_and_config(api: Api) -> None:
    code, body = await api.request("POST", "/configure/load-balancer", params={"strategy": "round_robin"})
    assert code == 200 and body == {"status": "configured", "strategy": "round_robin"}
    code, body = await api.request(
        "POST", "/configure/circuit-breaker", params={"failure_threshold": 3, "recovery_timeout": 30}
    )
    assert code == 200 and body == {"status": "configured", "failure_threshold": 3, "recovery_timeout": 30}
    params = {"max_attempts": 2, "base_delay": 0.01, "max_delay": 1, "retry_all_5xx": "true"}
    code, body = await api.request("POST", "/configure/retry", params=params)
    assert code == 200
    assert body == {
        "status": "configured",
        "max_attempts": 2,
        "base_delay": 0.01,
        "max_delay": 1.0,
        "retry_all_5xx": True,
    }
    params = {"interval": 5, "timeout": 1, "unhealthy_threshold": 2, "healthy_threshold": 1}
    code, body = await api.request("POST", "/configure/health-check", params=params)
    assert (
        code == 200
        and body["status"] == "configured"
        and body["interval"] == 5.0
        and body["path"] == "/health"
    )
    code, config = await api.request("GET", "/config")
    assert config == {
        "load_balancer": {"strategy": "round_robin"},
        "circuit_breaker": {"failure_threshold": 3, "recovery_timeout": 30},
        "retry": {"max_attempts": 2, "base_delay": 0.01, "max_delay": 1.0, "retry_all_5xx": True},
        "health_check": {
            "interval": 5.0,
            "timeout": 1.0,
            "unhealthy_threshold": 2,
            "healthy_threshold": 1,
            "path": "/health",
            "kind": "http",
        },
    }


async def test_settings_survive_a_restart(start_api: StartApi, tmp_path) -> None:
    first = await start_api(data_dir=tmp_path / "d")
    await first.request("POST", "/configure/load-balancer", params={"strategy": "least_connections"})
    await first.request("POST", "/configure/circuit-breaker", params={"failure_threshold": 7})
    await first.register("kept", 9000)
    await first.stop()
    second = await start_api(data_dir=tmp_path / "d")
    code, config = await second.request("GET", "/config")
    assert code == 200
    assert config["load_balancer"]["strategy"] == "least_connections"
    assert config["circuit_breaker"]["failure_threshold"] == 7
    assert second.plane.mesh.client.strategy == "least_connections"
    assert second.plane.mesh.client.parts.breakers.policy.failure_threshold == 7
    _code, found = await second.request("GET", "/discover/kept")
    assert found["total"] == 1


async def test_round_robin_applies_to_existing_instances(api: Api, upstreams) -> None:
    a, b = await upstreams("a"), await upstreams("b")
    await api.register("pair", a.port)
    await api.register("pair", b.port)
    await api.request("POST", "/configure/load-balancer", params={"strategy": "round_robin"})
    bodies = [
        (await api.request("POST", "/call", json={"service_name": "pair"}))[1]["body"] for _ in range(6)
    ]
    assert sorted(bodies) == ["a", "a", "a", "b", "b", "b"]


async def test_breaker_setting_applies_to_existing_breakers(api: Api, upstreams) -> None:
    bad = await upstreams("bad", status(503))
    await api.register("fragile", bad.port)
    sid = f"fragile-127.0.0.1-{bad.port}"
    call = {"service_name": "fragile", "retry_count": 0}
    await api.request("POST", "/call", json=call)  # the breaker exists now, under threshold 5
    code, _ = await api.request("POST", "/configure/circuit-breaker", params={"failure_threshold": 2})
    assert code == 200
    await api.request("POST", "/call", json=call)
    code, topo = await api.request("GET", "/topology")
    assert topo["circuit_breakers"][sid] == "open"
    code, health = await api.request("GET", "/health")
    assert health["status"] == "degraded" and health["open_circuit_breakers"] == 1
    code, _body = await api.request("POST", "/call", json=call)
    assert code == 503 and bad.hits == 2  # failed fast, nothing sent


async def test_retry_setting_is_the_default_when_the_call_names_none(api: Api, upstreams) -> None:
    bad = await upstreams("bad", status(503))
    await api.register("retried", bad.port)
    await api.request("POST", "/configure/retry", params={"max_attempts": 1})
    await api.request("POST", "/call", json={"service_name": "retried"})
    assert bad.hits == 1
    await api.request("POST", "/configure/retry", params={"max_attempts": 3, "base_delay": 0})
    await api.request("POST", "/call", json={"service_name": "retried"})
    assert bad.hits == 4
    await api.request("POST", "/call", json={"service_name": "retried", "retry_count": 0})
    assert bad.hits == 5  # an explicit retry_count wins


async def test_default_health_check_reaches_existing_instances(api: Api, upstreams) -> None:
    sick = await upstreams("sick", status(500))
    await api.register("checked", sick.port)
    sid = f"checked-127.0.0.1-{sick.port}"
    params = {"interval": 0.05, "timeout": 1, "unhealthy_threshold": 1, "healthy_threshold": 1}
    code, _ = await api.request("POST", "/configure/health-check", params=params)
    assert code == 200
    for _ in range(100):
        code, detail = await api.request("GET", f"/instances/{sid}")
        if detail["state"] == "unhealthy":
            break
        await asyncio.sleep(0.05)
    assert detail["state"] == "unhealthy" and detail["check_source"] == "default"
    assert detail["check"]["interval"] == 0.05 and "/health" in sick.paths
    code, health = await api.request("GET", "/health")
    assert health["status"] == "unhealthy" and health["health_score"] == 0.0
