"""ControlPlane and its small parts, without HTTP: settings, owners, default checks, discovery hygiene."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from meshkit.plane.auth import Forbidden, Principal
from meshkit.plane.checks import with_default_check
from meshkit.plane.inputs import describe_registry, encode_body
from meshkit.plane.owners import OWNER_KEY, KeyedLock, owner_of, stamp_owner
from meshkit.plane.plane import ControlPlane
from meshkit.plane.problems import NotFound
from meshkit.plane.settings import (
    BreakerSettings,
    HealthCheckSettings,
    PlaneSettings,
    RetrySettings,
    SettingsFile,
)
from meshkit.plane.ssrf import BodyTooLarge
from meshkit.types import HealthCheck, LoadBalancerStrategy, ServiceInstance

ADMIN = Principal("admin", True)
TEAM = Principal("team", False, frozenset({"users"}))


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: BreakerSettings(0, 60), "failure_threshold"),
        (lambda: BreakerSettings(5, 3601), "recovery_timeout"),
        (lambda: RetrySettings(max_attempts=12), "max_attempts"),
        (lambda: RetrySettings(base_delay=float("nan")), "base_delay"),
        (lambda: RetrySettings(base_delay=5, max_delay=1), "base_delay"),
        (lambda: RetrySettings(max_delay=0), "max_delay"),
        (lambda: HealthCheckSettings(interval=0), "interval"),
        (lambda: HealthCheckSettings(unhealthy_threshold=0), "unhealthy_threshold"),
        (lambda: HealthCheckSettings(path="http://x/"), "path"),
        (lambda: HealthCheckSettings(kind="ttl"), "kind"),
    ],
)
def test_settings_refuse_bad_values_naming_the_field(make, field: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=f"^{field}:"):
        make()


def test_settings_file_round_trip_and_broken_groups(tmp_path: Path) -> None:
    file = SettingsFile(tmp_path)
    assert file.load() == PlaneSettings()
    wanted = PlaneSettings(
        LoadBalancerStrategy.IP_HASH, BreakerSettings(3, 10), RetrySettings(2), HealthCheckSettings(1.5)
    )
    file.save(wanted)
    assert SettingsFile(tmp_path).load() == wanted
    assert file.path is not None
    file.path.write_text(
        '{"load_balancer": {"strategy": "fastest"}, "retry": {"max_attempts": 0}, "circuit_breaker": {"failure_threshold": 9}}'
    )
    loaded = SettingsFile(tmp_path).load()
    assert loaded.strategy == LoadBalancerStrategy.P2C_EWMA and loaded.retry == RetrySettings()
    assert loaded.circuit_breaker == BreakerSettings(9, 60)
    file.path.write_text("{not json")
    assert SettingsFile(tmp_path).load() == PlaneSettings()
    assert SettingsFile(None).load() == PlaneSettings()


def test_owner_stamp_and_reserved_key() -> None:
    meta = stamp_owner({"a": "b"}, TEAM)
    assert meta == {"a": "b", OWNER_KEY: "team"}
    inst = ServiceInstance("users-1", "users", "127.0.0.1", 1, metadata=meta)
    assert owner_of(inst) == "team"
    with pytest.raises(ValueError, match=r"^metadata:"):
        stamp_owner({OWNER_KEY: "admin"}, TEAM)


async def test_keyed_lock_serialises_one_key_and_forgets_idle_keys() -> None:
    locks = KeyedLock()
    order: list[str] = []

    async def hold(key: str, tag: str) -> None:
        async with locks.hold(key):
            order.append(f"{tag}+")
            await asyncio.sleep(0.01)
            order.append(f"{tag}-")

    await asyncio.gather(hold("a", "1"), hold("a", "2"), hold("b", "3"))
    assert order.index("1-") < order.index("2+")  # same key: one at a time
    assert order.index("3+") < order.index("1-")  # other key: concurrently
    assert len(locks) == 0


def test_default_check_fills_only_instances_without_one() -> None:
    own = HealthCheck(path="/ready")
    default = HealthCheck(path="/health", interval=1.0)
    a = ServiceInstance("a-1", "a", "127.0.0.1", 1, check=own)
    b = ServiceInstance("b-1", "b", "127.0.0.1", 2)
    checked = with_default_check([a, b], default)
    assert checked[0] is a and checked[1].check == default and b.check is None


def test_encode_body() -> None:
    assert encode_body(None, 10) is None
    assert encode_body("é", 10) == "é".encode()
    assert encode_body({"n": 10**30}, 100) == b'{"n": 1000000000000000000000000000000}'
    with pytest.raises(BodyTooLarge, match=r"^body:"):
        encode_body("x" * 11, 10)


async def test_ownership_and_not_found_without_http(tmp_path: Path) -> None:
    plane = ControlPlane(data_dir=tmp_path, admin_token="t" * 20, health_checks=False)
    await plane.start()
    try:
        await plane.register(TEAM, service_name="users", address="127.0.0.1", port=1)
        rival = Principal("rival", False, frozenset({"users"}))
        with pytest.raises(Forbidden):
            await plane.register(rival, service_name="users", address="127.0.0.1", port=1)
        with pytest.raises(Forbidden):
            await plane.register(TEAM, service_name="orders", address="127.0.0.1", port=2)
        with pytest.raises(NotFound):
            await plane.deregister(ADMIN, "nope")
        with pytest.raises(Forbidden):
            plane.require_admin(TEAM)
        await plane.deregister(ADMIN, "users-127.0.0.1-1")
    finally:
        await plane.close()


async def test_discovering_made_up_names_creates_no_followers() -> None:
    plane = ControlPlane(admin_token="t" * 20, health_checks=False)
    await plane.start()
    try:
        before = len(asyncio.all_tasks())
        for i in range(50):
            found = await plane.discover(f"made-up-{i}")
            assert found["total"] == 0
        assert len(asyncio.all_tasks()) == before
        await plane.register(ADMIN, service_name="real", address="127.0.0.1", port=1)
        await asyncio.sleep(0.01)
        assert (await plane.discover("real"))["total"] == 1
    finally:
        await plane.close()


def test_registry_description_masks_passwords() -> None:
    plane = ControlPlane(registry="embedded", admin_token="t" * 20, health_checks=False)
    assert plane.registry_description == "embedded (in memory)"
    assert describe_registry("etcd://user:secret@10.0.0.1:2379", None) == "etcd://user:***@10.0.0.1:2379"
