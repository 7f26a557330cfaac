"""A Consul double per test, and a ConsulRegistry started against it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from meshkit.registry.consul import ConsulRegistry
from tests.doubles.consul_double import ConsulDouble


@pytest.fixture
async def consul() -> AsyncIterator[ConsulDouble]:
    double = ConsulDouble()
    await double.start()
    yield double
    await double.close()


@pytest.fixture
async def registry(consul: ConsulDouble) -> AsyncIterator[ConsulRegistry]:
    reg = ConsulRegistry(consul.address, wait="2s", rate_limit=0.0, timeout=2.0)
    await reg.start()
    yield reg
    await reg.close()
