"""Registries for the tests: each test runs against the in-memory and the SQLite mode."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from meshkit.clock import FakeClock
from meshkit.registry import EmbeddedRegistry
from meshkit.types import ServiceInstance


def inst(name: str = "users", port: int = 8000, **kw: object) -> ServiceInstance:
    address = str(kw.pop("address", "10.0.0.1"))
    sid = str(kw.pop("service_id", f"{name}-{address}-{port}"))
    return ServiceInstance(sid, name, address, port, **kw)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", "sqlite"])
async def registry(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[EmbeddedRegistry]:
    data_dir = tmp_path / "data" if request.param == "sqlite" else None
    reg = EmbeddedRegistry(data_dir, clock=clock, deregister_critical_after=60.0)
    await reg.start()
    yield reg
    await reg.close()
