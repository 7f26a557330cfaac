"""The seed's v2 API, path for path and shape for shape, against real upstreams."""

from __future__ import annotations

import asyncio

from tests.plane.api.conftest import Api
from tests.support.servers import status


async def test_register_discover_call_topology_health_deregister(api: Api, upstreams) -> None:
    up = await upstreams("alpha")
    code, body = await api.register("users", up.port, tags=["v1"], metadata={"team": "core", "n": 2})
    assert code == 200
    sid = f"users-127.0.0.1-{up.port}"
    assert body == {
        "service_id": sid,
        "status": "registered",
        "message": "Service users registered successfully",
    }

    code, found = await api.request("GET", "/discover/users", params={"use_cache": "true"})
    assert code == 200
    assert found["service_name"] == "users" and found["total"] == 1 and found["healthy"] == 1
    (inst,) = found["instances"]
    assert inst["id"] == sid and inst["address"] == f"127.0.0.1:{up.port}" and inst["state"] == "healthy"
    assert inst["tags"] == ["v1"]
    assert inst["metadata"]["team"] == "core" and inst["metadata"]["n"] == "2"  # seed's any-JSON values
    assert found["stale"] is False

    code, result = await api.request("POST", "/call", json={"service_name": "users", "path": "/u/1?x=1"})
    assert code == 200, result
    assert set(result) == {"status_code", "headers", "body", "instance_id", "trace_id", "duration"}
    assert result["status_code"] == 200 and result["body"] == "alpha" and result["instance_id"] == sid
    assert len(result["trace_id"]) == 32 and result["duration"] > 0
    assert up.paths == ["/u/1?x=1"]

    code, topo = await api.request("GET", "/topology")
    assert code == 200
    assert topo["total_instances"] == 1 and topo["healthy_instances"] == 1
    (entry,) = topo["services"]["users"]["instances"]
    assert entry == {
        "id": sid,
        "address": f"127.0.0.1:{up.port}",
        "state": "healthy",
        "connections": 0,
        "circuit_breaker": "closed",
    }

    code, health = await api.request("GET", "/health")
    assert code == 200
    assert health == {
        "status": "healthy",
        "health_score": 1.0,
        "total_services": 1,
        "total_instances": 1,
        "healthy_instances": 1,
        "open_circuit_breakers": 0,
        "consul_connected": True,
    }

    code, body = await api.request("DELETE", f"/deregister/{sid}")
    assert code == 200 and body == {
        "status": "deregistered",
        "message": f"Service {sid} deregistered successfully",
    }
    code, body = await api.request("DELETE", f"/deregister/{sid}")
    assert code == 404 and "detail" in body
    code, found = await api.request("GET", "/discover/users")
    assert found["total"] == 0


async def test_discover_unknown_service_is_empty_not_an_error(api: Api) -> None:
    code, found = await api.request("GET", "/discover/nobody-here")
    assert code == 200 and found["instances"] == [] and found["total"] == 0 and found["healthy"] == 0


async def test_upstream_5xx_is_a_result_and_no_instance_is_503(api: Api, upstreams) -> None:
    bad = await upstreams("bad", status(500))
    await api.register("flaky", bad.port)
    code, result = await api.request("POST", "/call", json={"service_name": "flaky", "retry_count": 0})
    assert code == 200 and result["status_code"] == 500
    code, body = await api.request("POST", "/call", json={"service_name": "ghost"})
    assert code == 503 and "ghost" in body["detail"]


async def test_call_refused_connection_is_503_and_slow_upstream_is_504(api: Api, upstreams) -> None:
    from tests.support.servers import free_port, hang

    await api.register("gone", free_port())
    code, body = await api.request("POST", "/call", json={"service_name": "gone", "retry_count": 1})
    assert code == 503 and "detail" in body
    slow = await upstreams("slow", hang())
    await api.register("slow", slow.port)
    code, body = await api.request(
        "POST", "/call", json={"service_name": "slow", "timeout": 1, "retry_count": 0}
    )
    assert code == 504, body


async def test_weighted_registration_with_zone_version_ttl_and_heartbeat(api: Api, upstreams) -> None:
    up = await upstreams("z")
    code, _ = await api.register("zoned", up.port, weight=5, zone="eu-1", version="1.2.3", ttl=30)
    assert code == 200
    sid = f"zoned-127.0.0.1-{up.port}"
    code, found = await api.request("GET", "/discover/zoned")
    inst = found["instances"][0]
    assert (inst["weight"], inst["zone"], inst["version"]) == (5, "eu-1", "1.2.3")
    code, body = await api.request("PUT", f"/heartbeat/{sid}")
    assert code == 200 and body == {"status": "ok", "service_id": sid}
    code, body = await api.request("PUT", "/heartbeat/zoned-127.0.0.1-1")
    assert code == 404


async def test_instance_detail_has_check_history_and_breaker(api: Api, upstreams) -> None:
    up = await upstreams("d")
    check = {
        "path": "/health",
        "interval": 0.05,
        "timeout": 1,
        "unhealthy_threshold": 1,
        "healthy_threshold": 1,
    }
    await api.register("detail", up.port, check=check)
    sid = f"detail-127.0.0.1-{up.port}"
    for _ in range(100):
        code, detail = await api.request("GET", f"/instances/{sid}")
        if detail["checks"] and detail["transitions"]:
            break
        await asyncio.sleep(0.05)
    assert code == 200
    assert detail["check_source"] == "instance" and detail["check"]["interval"] == 0.05
    assert detail["checks"][0]["ok"] is True
    assert detail["transitions"][0]["new"] == "healthy"
    assert detail["circuit_breaker"] == "closed" and detail["metadata"]["meshkit.owner"] == "admin"
    code, _body = await api.request("GET", "/instances/nope")
    assert code == 404


async def test_enqueue_and_results_without_redis_are_503(api: Api) -> None:
    code, body = await api.request("POST", "/enqueue", json={"topic": "jobs", "task": {"a": 1}})
    assert code == 503 and "Redis" in body["detail"]
    code, body = await api.request("GET", "/results", params={"topic": "jobs"})
    assert code == 503
    code, body = await api.request("GET", "//api/v1/mesh/results", params={"topic": "jobs"})
    assert code == 503 and "Redis" in body["detail"]


async def test_metrics_at_both_paths(api: Api, upstreams) -> None:
    up = await upstreams("m")
    await api.register("metered", up.port)
    await api.request("POST", "/call", json={"service_name": "metered"})
    for path in ("/metrics", "//metrics"):
        code, text = await api.request("GET", path)
        assert code == 200
        assert 'mesh_requests_total{method="GET",service="metered",status_class="2xx"} 1.0' in text
        assert "mesh_registered_instances 1.0" in text


async def test_openapi_docs_are_served(api: Api) -> None:
    code, spec = await api.request("GET", "//openapi.json", token=None)
    assert code == 200
    for path in ("/register", "/call", "/configure/retry", "/tokens", "/instances/{service_id}", "/traces"):
        assert "/api/v1/mesh/v2" + path in spec["paths"]
    code, page = await api.request("GET", "//docs", token=None)
    assert code == 200 and "swagger" in page.lower()
