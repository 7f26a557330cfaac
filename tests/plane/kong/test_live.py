"""Live tests against a real Kong Admin API: run only when KONG_ADMIN_URL is set.

    KONG_ADMIN_URL=http://127.0.0.1:8001 .venv/bin/pytest -m kong tests/plane/kong

KONG_ADMIN_TOKEN is sent as Kong-Admin-Token when set. The tests use a unique tag and
name prefix, so they touch only what they create, and remove it at the end.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest

from meshkit.plane.kong import KongAdmin, KongSync
from meshkit.registry import EmbeddedRegistry
from meshkit.types import ServiceInstance, ServiceState

URL = os.environ.get("KONG_ADMIN_URL", "")
pytestmark = [
    pytest.mark.kong,
    pytest.mark.skipif(not URL, reason="KONG_ADMIN_URL is not set: no live Kong Admin API to test against"),
]


@pytest.fixture
async def live() -> AsyncIterator[tuple[EmbeddedRegistry, KongAdmin, KongSync]]:
    registry = EmbeddedRegistry(None)
    await registry.start()
    admin = KongAdmin(URL, token=os.environ.get("KONG_ADMIN_TOKEN") or None)
    await admin.start()
    run = uuid.uuid4().hex[:8]
    syncer = KongSync(registry, admin, prefix=f"mklive{run}-", tag=f"meshkit-live-{run}")
    yield registry, admin, syncer
    for inst in await registry.all_instances():
        await registry.deregister(inst.service_id)
    await syncer.sync()  # an empty registry: everything this run created is deleted
    await admin.close()
    await registry.close()


async def test_sync_configures_kong_idempotently(live: tuple[EmbeddedRegistry, KongAdmin, KongSync]) -> None:
    registry, admin, syncer = live
    await registry.register(
        ServiceInstance("users-1", "users", "127.0.0.1", 9001, state=ServiceState.HEALTHY, weight=20)
    )
    await registry.register(
        ServiceInstance("users-2", "users", "127.0.0.1", 9002, state=ServiceState.UNHEALTHY)
    )
    changes = await syncer.sync()
    assert changes and not any(c.error for c in changes), [c.error for c in changes if c.error]
    up = f"{syncer.prefix}users-upstream"
    targets = {t["target"]: t["weight"] for t in await admin.list(f"/upstreams/{up}/targets")}
    assert targets == {"127.0.0.1:9001": 20}
    upstream = await admin.get(f"/upstreams/{up}")
    assert upstream is not None and upstream["healthchecks"]["active"]["http_path"] == "/health"
    assert await syncer.sync() == []
