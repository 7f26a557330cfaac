"""EmbeddedRegistry: writes, reads, persistence, settings and the closed state."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from meshkit.errors import RegistryUnavailable
from meshkit.registry import EmbeddedRegistry, Registry, UnknownInstance
from meshkit.types import HealthCheck, ServiceState
from tests.registry.conftest import inst


async def test_register_then_read_back(registry: EmbeddedRegistry) -> None:
    record = await registry.register(inst(tags=["v1"], metadata={"team": "core"}, zone="eu-1"))
    assert record.service_id == "users-10.0.0.1-8000"
    assert await registry.get(record.service_id) == record
    snap = await registry.instances("users")
    assert [i.id for i in snap.instances] == [record.id]
    assert snap.revision == registry.revision == 1
    assert not snap.stale
    assert await registry.services() == {"users": 1}
    assert await registry.all_instances() == [record]
    assert isinstance(registry, Registry)


async def test_registry_keeps_its_own_copy(registry: EmbeddedRegistry) -> None:
    original = inst(tags=["a"])
    await registry.register(original)
    original.tags.append("mutated-after-register")
    stored = await registry.get(original.id)
    assert stored is not None and stored.tags == ["a"]


async def test_reregister_same_id_replaces(registry: EmbeddedRegistry) -> None:
    await registry.register(inst(weight=10))
    await registry.register(inst(weight=70))
    snap = await registry.instances("users")
    assert [i.weight for i in snap.instances] == [70]
    assert snap.revision == 2


async def test_reregister_under_another_service_moves_it(registry: EmbeddedRegistry) -> None:
    await registry.register(inst("users", service_id="x"))
    await registry.register(inst("orders", service_id="x"))
    assert await registry.services() == {"orders": 1}
    assert (await registry.instances("users")).instances == ()


async def test_deregister_reports_whether_it_existed(registry: EmbeddedRegistry) -> None:
    record = await registry.register(inst())
    assert await registry.deregister(record.id) is True
    assert await registry.deregister(record.id) is False
    assert await registry.get(record.id) is None
    assert await registry.services() == {}
    assert (await registry.instances("users")).revision == 2  # the removal is a change


async def test_heartbeat_unknown_instance_raises(registry: EmbeddedRegistry) -> None:
    with pytest.raises(UnknownInstance, match="service_id: no instance 'nope'") as err:
        await registry.heartbeat("nope")
    assert isinstance(err.value, KeyError)


async def test_set_state_changes_only_on_a_change(registry: EmbeddedRegistry) -> None:
    record = await registry.register(inst())
    updated = await registry.set_state(record.id, ServiceState.HEALTHY, "probe ok")
    assert updated is not None and updated.state == ServiceState.HEALTHY
    rev = registry.revision
    again = await registry.set_state(record.id, ServiceState.HEALTHY)
    assert again is updated and registry.revision == rev
    assert await registry.set_state("unknown-id", ServiceState.UNHEALTHY) is None
    with pytest.raises(ValueError, match=r"^state: must be one of"):
        await registry.set_state(record.id, "sideways")  # type: ignore[arg-type]


async def test_concurrent_writes_commit_in_order(registry: EmbeddedRegistry) -> None:
    records = await asyncio.gather(*(registry.register(inst(port=9000 + i)) for i in range(300)))
    snap = await registry.instances("users")
    assert [i.id for i in snap.instances] == [r.id for r in records]
    assert registry.revision == 300


async def test_closed_registry_is_unavailable(registry: EmbeddedRegistry) -> None:
    await registry.close()
    with pytest.raises(RegistryUnavailable):
        await registry.instances("users")
    with pytest.raises(RegistryUnavailable):
        await registry.register(inst())


async def test_sqlite_survives_restart_with_settings(tmp_path: Path) -> None:
    check = HealthCheck(path="/ready", interval=5.0)
    async with EmbeddedRegistry(tmp_path) as reg:
        await reg.register(inst(tags=["t"], metadata={"k": "v"}, check=check, ttl=30.0, version="1.2"))
        await reg.register(inst(port=8001))
        await reg.set_state("users-10.0.0.1-8000", ServiceState.DEGRADED)
        await reg.deregister("users-10.0.0.1-8001")
        await reg.put_setting("load_balancer", {"strategy": "p2c_ewma", "seed": [1, 2]})
        revision = reg.revision
    async with EmbeddedRegistry(tmp_path) as reg:
        assert reg.revision == revision
        [back] = await reg.all_instances()
        assert (back.tags, back.metadata, back.state, back.ttl, back.version) == (
            ["t"], {"k": "v"}, ServiceState.DEGRADED, 30.0, "1.2",
        )  # fmt: skip
        assert back.check == check
        assert await reg.get_setting("load_balancer") == {"strategy": "p2c_ewma", "seed": [1, 2]}
        assert await reg.get_setting("absent", "default") == "default"


async def test_one_process_one_writer(tmp_path: Path) -> None:
    async with EmbeddedRegistry(tmp_path):
        second = EmbeddedRegistry(tmp_path)
        with pytest.raises(RegistryUnavailable, match="data_dir: cannot open"):
            await second.start()


async def test_bad_settings_are_refused(registry: EmbeddedRegistry) -> None:
    with pytest.raises(ValueError, match=r"^value: must be JSON"):
        await registry.put_setting("k", object())
    with pytest.raises(ValueError, match=r"^key:"):
        await registry.put_setting("", 1)


def test_constructor_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match=r"^batch_max:"):
        EmbeddedRegistry(batch_max=0)
    with pytest.raises(ValueError, match=r"^deregister_critical_after:"):
        EmbeddedRegistry(deregister_critical_after=-1)
    with pytest.raises(ValueError, match=r"^synchronous:"):
        EmbeddedRegistry("/tmp/x", synchronous="OFF")  # type: ignore[arg-type]


async def test_failed_commit_fails_the_batch_and_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with EmbeddedRegistry(tmp_path) as reg:
        await reg.register(inst(port=1))
        store = reg._store
        assert store is not None
        real_write = store.write

        async def broken_write(*args: object) -> None:
            raise sqlite3.OperationalError("disk I/O error")

        monkeypatch.setattr(store, "write", broken_write)
        with pytest.raises(RegistryUnavailable, match="disk I/O error"):
            await reg.register(inst(port=2))
        assert [i.port for i in await reg.all_instances()] == [1] and reg.revision == 1
        monkeypatch.setattr(store, "write", real_write)
        await reg.register(inst(port=3))  # the writer survived
    async with EmbeddedRegistry(tmp_path) as reg:
        assert sorted(i.port for i in await reg.all_instances()) == [1, 3]
