"""Real etcd for the etcd registry tests: a one-member cluster shared by a module, a fresh prefix per test."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from meshkit.clock import FakeClock
from meshkit.registry.etcd import EtcdRegistry
from tests.registry.etcd.cluster import ETCD, EtcdCluster

pytestmark = pytest.mark.skipif(not Path(ETCD).exists(), reason="etcd-server is not installed")
_prefixes = itertools.count()


def fresh_prefix() -> str:
    return f"/meshkit-test-{next(_prefixes)}/"


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    cluster = EtcdCluster(tmp_path_factory.mktemp("etcd1"), size=1)
    try:
        yield cluster.start()
    finally:
        cluster.close()


@pytest.fixture
def prefix() -> str:
    return fresh_prefix()


@pytest.fixture
async def etcd(single: EtcdCluster, prefix: str, clock: FakeClock) -> AsyncIterator[EtcdRegistry]:
    registry = EtcdRegistry(single.endpoints, prefix=prefix, clock=clock, timeout=2.0, reap_interval=None)
    await registry.start()
    yield registry
    await registry.close()
