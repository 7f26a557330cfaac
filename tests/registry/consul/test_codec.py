"""Instances as Consul service definitions and back; states from Consul's check statuses."""

from __future__ import annotations

import pytest

from meshkit.registry.consul.codec import aggregate, decode_health, decode_service, duration, encode_service
from meshkit.types import HealthCheck, ServiceInstance, ServiceState


def inst(**kw: object) -> ServiceInstance:
    base: dict[str, object] = {
        "service_id": "users-1",
        "service_name": "users",
        "address": "10.0.0.1",
        "port": 8080,
    }
    base.update(kw)
    return ServiceInstance(**base)  # type: ignore[arg-type]


def test_duration_strings() -> None:
    assert [duration(10), duration(0.25), duration(90.0), duration(0.0001)] == ["10s", "250ms", "90s", "1ms"]


def test_http_check_and_meshkit_fields_are_encoded_as_consul_documents_them() -> None:
    check = HealthCheck(path="/ready", interval=5, timeout=1.5, healthy_threshold=2, unhealthy_threshold=4)
    body = encode_service(
        inst(tags=["v2"], metadata={"team": "core"}, weight=0, zone="eu-1", version="2.1", check=check)
    )
    assert body["ID"] == "users-1" and body["Name"] == "users" and body["Port"] == 8080
    assert body["Weights"] == {"Passing": 1, "Warning": 1}  # Consul needs >= 1; weight 0 rides in Meta
    assert all(isinstance(v, str) for v in body["Meta"].values())
    assert body["Meta"]["meshkit-weight"] == "0" and body["Meta"]["team"] == "core"
    c = body["Check"]
    assert c["HTTP"] == "http://10.0.0.1:8080/ready" and c["Interval"] == "5s" and c["Timeout"] == "1500ms"
    assert c["SuccessBeforePassing"] == 2 and c["FailuresBeforeCritical"] == 4
    assert c["DeregisterCriticalServiceAfter"] == "60s" and "Status" not in c


def test_tcp_ttl_and_no_check() -> None:
    assert encode_service(inst(check=HealthCheck(kind="tcp")))["Check"]["TCP"] == "10.0.0.1:8080"
    ttl = encode_service(inst(check=HealthCheck(kind="ttl", ttl=15), state=ServiceState.HEALTHY))["Check"]
    assert ttl["TTL"] == "15s" and ttl["Status"] == "passing" and "HTTP" not in ttl
    assert encode_service(inst(ttl=30.0))["Check"]["TTL"] == "30s"  # a bare heartbeat TTL
    assert "Check" not in encode_service(inst())
    assert encode_service(inst(address="::1"))["Address"] == "::1"


@pytest.mark.parametrize("key", ["a.b", "consul-x", "meshkit-weight", "x" * 129, "a/b"])
def test_meta_keys_consul_refuses_are_rejected_naming_metadata(key: str) -> None:
    with pytest.raises(ValueError, match=r"^metadata: "):
        encode_service(inst(metadata={key: "v"}))


def test_meta_limits() -> None:
    with pytest.raises(ValueError, match=r"^metadata: .*at most 59"):
        encode_service(inst(metadata={f"k{i}": "v" for i in range(60)}))
    with pytest.raises(ValueError, match=r"^metadata: .*512"):
        encode_service(inst(metadata={"k": "v" * 513}))


def test_round_trip_through_a_health_entry() -> None:
    original = inst(
        tags=["a"], metadata={"team": "core"}, weight=7, zone="z", version="1.0",
        check=HealthCheck(path="/h", interval=3), ttl=None,
    )  # fmt: skip
    svc = encode_service(original)
    entry = {"Node": {"Address": "10.9.9.9"}, "Service": {**svc, "Service": svc["Name"]}, "Checks": []}
    (back,) = decode_health([entry])
    assert (back.service_id, back.address, back.port, back.tags, back.metadata) == (
        "users-1", "10.0.0.1", 8080, ["a"], {"team": "core"},
    )  # fmt: skip
    assert (back.weight, back.zone, back.version, back.check) == (7, "z", "1.0", original.check)
    assert back.state == ServiceState.HEALTHY


def test_foreign_services_use_consul_defaults_and_node_address() -> None:
    svc = {
        "ID": "web-a",
        "Service": "web",
        "Address": "",
        "Port": 80,
        "Weights": {"Passing": 3, "Warning": 1},
    }
    got = decode_service(svc, [], node_address="10.1.1.1")
    assert got is not None and got.address == "10.1.1.1" and got.weight == 3 and got.check is None


def test_unrepresentable_services_are_skipped() -> None:
    assert decode_service({"ID": "x", "Service": "Web_UI", "Port": 80, "Address": "a"}, []) is None
    assert decode_service({"ID": "c", "Service": "consul", "Port": 8300, "Address": "a"}, []) is None
    assert decode_service({"ID": "x", "Service": "web", "Port": 0, "Address": "a"}, []) is None
    assert (
        decode_service(
            {"ID": "x", "Service": "web", "Port": 1, "Address": "a", "Meta": {"meshkit-check": "{"}}, []
        )
        is None
    )


@pytest.mark.parametrize(
    ("statuses", "state"),
    [
        ([], ServiceState.HEALTHY),
        (["passing", "passing"], ServiceState.HEALTHY),
        (["passing", "warning"], ServiceState.DEGRADED),
        (["warning", "critical"], ServiceState.UNHEALTHY),
        (["passing", "maintenance"], ServiceState.UNHEALTHY),
    ],
)
def test_state_is_the_worst_check(statuses: list[str], state: ServiceState) -> None:
    assert aggregate([{"Status": s} for s in statuses]) == state
