"""The desired Kong state for a registry, and the diff: pure functions, no Kong needed."""

from __future__ import annotations

import copy
from typing import Any

from meshkit.plane.kong.plan import KongState, covers, desired_state, format_diff, plan
from meshkit.types import HealthCheck, ServiceInstance, ServiceState

H = ServiceState.HEALTHY


def inst(name: str, port: int, state: ServiceState = H, **kw: Any) -> ServiceInstance:
    return ServiceInstance(f"{name}-{port}", name, "10.0.0.1", port, state=state, **kw)


def as_kong_holds(state: KongState) -> KongState:
    """What Kong would answer after applying `state`: defaults added, ids, routes naming services."""
    held = copy.deepcopy(state)
    for up in held.upstreams.values():
        up["healthchecks"]["active"]["concurrency"] = 10
        up["id"], up["slots"] = "u-" + up["name"], 10000
    for svc in held.services.values():
        svc["retries"] = 5
    for targets in held.targets.values():
        for t in targets.values():
            t["id"] = "t-" + t["target"]
    return held


def test_desired_state_follows_the_seed_layout() -> None:
    check = HealthCheck(path="/ready", interval=5, timeout=1.5, healthy_threshold=2, unhealthy_threshold=3)
    state = desired_state(
        [
            inst("users", 1, check=check, weight=7),
            inst("users", 2, ServiceState.UNHEALTHY),
            inst("users", 3, ServiceState.DEGRADED),
        ]
    )
    assert state.services["users"]["host"] == "users-upstream"
    assert state.routes["users"]["paths"] == ["/users"] and state.routes["users"]["service"] == {
        "name": "users"
    }
    active = state.upstreams["users-upstream"]["healthchecks"]["active"]
    assert active["http_path"] == "/ready" and active["healthy"] == {"interval": 5, "successes": 2}
    assert active["unhealthy"]["http_failures"] == 3 and active["timeout"] == 1.5
    assert state.targets == {
        "users-upstream": {"10.0.0.1:1": {"target": "10.0.0.1:1", "weight": 7, "tags": ["meshkit"]}}
    }
    assert all(e["tags"] == ["meshkit"] for e in [*state.upstreams.values(), *state.services.values()])


def test_check_kinds_and_defaults() -> None:
    assert (
        desired_state([inst("a", 1)]).upstreams["a-upstream"]["healthchecks"]["active"]["http_path"]
        == "/health"
    )
    tcp = desired_state([inst("a", 1, check=HealthCheck(kind="tcp"))]).upstreams["a-upstream"][
        "healthchecks"
    ]["active"]
    assert tcp["type"] == "tcp" and "http_path" not in tcp
    ttl = desired_state([inst("a", 1, check=HealthCheck(kind="ttl", ttl=5))]).upstreams["a-upstream"]
    assert ttl["healthchecks"]["active"]["healthy"]["interval"] == 0  # Kong cannot probe a TTL: off
    assert desired_state([inst("a", 1, weight=70000)]).targets["a-upstream"] == {}  # over Kong's range
    prefixed = desired_state([inst("a", 1)], prefix="mk-", tag="mesh")
    assert set(prefixed.services) == {"mk-a"} and set(prefixed.upstreams) == {"mk-a-upstream"}
    assert prefixed.routes["mk-a"]["paths"] == ["/a"] and prefixed.services["mk-a"]["tags"] == ["mesh"]


def test_from_empty_everything_is_created_in_an_order_kong_accepts() -> None:
    changes = plan(desired_state([inst("users", 1), inst("users", 2)]), KongState())
    assert [(c.action, c.kind, c.name) for c in changes] == [
        ("create", "upstream", "users-upstream"),
        ("create", "service", "users"),
        ("create", "route", "users"),
        ("create", "target", "10.0.0.1:1"),
        ("create", "target", "10.0.0.1:2"),
    ]


def test_plan_is_empty_once_kong_holds_the_desired_state() -> None:
    desired = desired_state([inst("users", 1), inst("orders", 2)])
    assert plan(desired, as_kong_holds(desired)) == []


def test_changed_weight_unhealthy_and_gone_instances() -> None:
    before = desired_state([inst("users", 1), inst("users", 2), inst("users", 3)])
    after = desired_state(
        [inst("users", 1, weight=50), inst("users", 2, ServiceState.UNHEALTHY), inst("users", 4)]
    )
    changes = plan(after, as_kong_holds(before))
    assert [(c.action, c.kind, c.name) for c in changes] == [
        ("create", "target", "10.0.0.1:4"),
        ("update", "target", "10.0.0.1:1"),
        ("delete", "target", "10.0.0.1:2"),
        ("delete", "target", "10.0.0.1:3"),
    ]
    assert changes[1].body is not None and changes[1].body["weight"] == 50
    assert changes[2].before is not None and changes[2].before["id"] == "t-10.0.0.1:2"


def test_a_service_that_left_the_registry_is_removed_route_first() -> None:
    held = as_kong_holds(desired_state([inst("users", 1), inst("orders", 2)]))
    changes = plan(desired_state([inst("orders", 2)]), held)
    assert [(c.action, c.kind, c.name) for c in changes] == [
        ("delete", "route", "users"),
        ("delete", "service", "users"),
        ("delete", "upstream", "users-upstream"),  # its targets go with it
    ]


def test_check_path_change_updates_the_upstream() -> None:
    held = as_kong_holds(desired_state([inst("users", 1)]))
    changes = plan(desired_state([inst("users", 1, check=HealthCheck(path="/ping"))]), held)
    assert [(c.action, c.kind) for c in changes] == [("update", "upstream")]
    assert "healthchecks.active.http_path: '/health' -> '/ping'" in format_diff(changes)


def test_names_taken_by_untagged_objects_are_reported_not_overwritten() -> None:
    actual = KongState(foreign={("service", "users")})
    changes = plan(desired_state([inst("users", 1)]), actual)
    conflict = next(c for c in changes if c.kind == "service")
    assert conflict.error is not None and "without meshkit's tag" in conflict.error


def test_covers_compares_only_what_meshkit_sets() -> None:
    assert covers({"a": 1, "b": {"c": 2.0, "d": 3}, "tags": ["y", "x"]}, {"b": {"c": 2}, "tags": ["x", "y"]})
    assert not covers({"a": 1}, {"a": 2})
    assert not covers({"a": True}, {"a": 1})
    assert not covers({"b": None}, {"b": {"c": 1}})


def test_format_diff() -> None:
    assert format_diff([]) == "no changes: Kong matches the registry"
    text = format_diff(plan(desired_state([inst("users", 1, weight=9)]), KongState()))
    assert text.splitlines() == [
        "+ upstream users-upstream",
        "+ service users",
        "+ route users",
        "+ target 10.0.0.1:1 in users-upstream  (weight 9)",
    ]
