"""open_registry: the one place that turns `meshkit serve --registry URL` into a backend.

`embedded` (the default: SQLite in the data directory), `memory` (nothing persisted),
`etcd://host:port[,host:port...]` and `consul://host:port`. Backends with extra
dependencies are imported only when asked for, so the default needs none of them.
"""

from __future__ import annotations

from pathlib import Path

from meshkit.clock import SYSTEM_CLOCK, Clock
from meshkit.registry.base import Registry
from meshkit.registry.embedded import EmbeddedRegistry

ALLOWED = "embedded, memory, etcd://host:port[,...], consul://host:port"


def open_registry(url: str | None, *, data_dir: Path | None, clock: Clock = SYSTEM_CLOCK) -> Registry:
    """The registry named by `url` (not started); ValueError naming `registry` for anything else."""
    if url is None or url == "embedded":
        return EmbeddedRegistry(data_dir, clock=clock)
    if url == "memory":
        return EmbeddedRegistry(None, clock=clock)
    if not isinstance(url, str):
        raise ValueError(f"registry: must be a string; allowed: {ALLOWED}; got {url!r}")
    if url.startswith("etcd://"):
        from meshkit.registry.etcd import EtcdRegistry

        return EtcdRegistry.from_url(url, clock=clock)
    if url.startswith("consul://"):
        from meshkit.registry.consul import ConsulRegistry  # type: ignore[import-not-found,unused-ignore]

        registry: Registry = ConsulRegistry.from_url(url)
        return registry
    raise ValueError(f"registry: unknown scheme in {url!r}; allowed: {ALLOWED}")
