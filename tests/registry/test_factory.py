"""open_registry: the --registry URL to a backend, and clear errors for anything else."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshkit.registry import EmbeddedRegistry
from meshkit.registry.etcd import EtcdRegistry
from meshkit.registry.factory import open_registry


def test_embedded_is_the_default_and_memory_persists_nothing(tmp_path: Path) -> None:
    for url in (None, "embedded"):
        registry = open_registry(url, data_dir=tmp_path)
        assert isinstance(registry, EmbeddedRegistry) and registry.data_dir == tmp_path
    memory = open_registry("memory", data_dir=tmp_path)
    assert isinstance(memory, EmbeddedRegistry) and memory.data_dir is None


def test_etcd_urls_name_every_member() -> None:
    registry = open_registry("etcd://10.0.0.1:2379,etcd-2:2380,[::1]:2381", data_dir=None)
    assert isinstance(registry, EtcdRegistry)
    assert registry.client.endpoints == [("10.0.0.1", 2379), ("etcd-2", 2380), ("::1", 2381)]


@pytest.mark.parametrize(
    "url", ["etcd://", "etcd://host", "etcd://host:0x", "etcd://host:70000", "etcd://a:1,", "etcd://u@h:1"]
)
def test_malformed_etcd_urls_are_refused_naming_the_registry(url: str) -> None:
    with pytest.raises(ValueError, match=r"^registry: bad etcd endpoint .*etcd://host:port"):
        open_registry(url, data_dir=None)


@pytest.mark.parametrize("url", ["redis://x:1", "sqlite", "", "ETCD://h:1"])
def test_unknown_schemes_list_the_allowed_ones(url: str) -> None:
    with pytest.raises(ValueError, match=r"^registry: unknown scheme .*allowed: embedded, memory, etcd://"):
        open_registry(url, data_dir=None)


def test_consul_urls_go_to_the_consul_backend() -> None:
    consul = pytest.importorskip("meshkit.registry.consul")
    registry = open_registry("consul://127.0.0.1:8500", data_dir=None)
    assert isinstance(registry, consul.ConsulRegistry)
