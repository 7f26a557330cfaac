"""Following a key range in etcd as a stream of whole snapshots, across member failures.

The pattern of Kubernetes' reflector ("list, then watch from the list's revision"): one
linearizable read gives the current instances and a revision R, then an etcd watch from
R+1 delivers every change after it, in order, and each batch becomes a new snapshot. When
the watch stream breaks (its member died or lost the quorum) the watch is opened again on
another member after the last event applied (not after a response header's revision: etcd
may split a replay of history over several responses, each headed with the store's current
revision), so etcd replays what happened in between and nothing is missed. If that history was compacted meanwhile, etcd says so and the range is
read afresh (a resync). When no member will take the watch, RegistryUnavailable ends the
stream; `CachedRegistry` then serves stale snapshots and calls `watch` again later.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from typing import Any

from meshkit.errors import RegistryUnavailable
from meshkit.registry.base import Snapshot
from meshkit.registry.etcd import keys
from meshkit.registry.etcd.client import EtcdClient, unb64
from meshkit.types import ServiceInstance


class _Compacted(Exception):
    pass


async def follow(
    client: EtcdClient, service: str | None, start: bytes, end: bytes
) -> AsyncGenerator[Snapshot, None]:
    name = service or ""
    members: dict[str, ServiceInstance] = {}
    revision = await _list(client, start, end, members)
    yield Snapshot(name, tuple(members.values()), revision)
    while True:
        delivered = False
        try:
            async with contextlib.aclosing(client.watch(start, end, revision + 1)) as stream:
                async for result in stream:
                    delivered = True
                    last = _apply(result, members)
                    if last:  # progress is the last event applied, never the response header's
                        revision = max(revision, last)  # revision: etcd splits a replay of history
                        yield Snapshot(name, tuple(members.values()), revision)  # over responses
        except _Compacted:
            revision = await _list(client, start, end, members)
            yield Snapshot(name, tuple(members.values()), revision)
        except RegistryUnavailable:
            if not delivered:  # no member would take the watch: let the caller back off
                raise
            # the stream broke after it had worked: resume from `revision` on another member


async def _list(client: EtcdClient, start: bytes, end: bytes, members: dict[str, ServiceInstance]) -> int:
    kvs, revision = await client.range(start, end)
    members.clear()
    for kv in kvs:
        members[unb64(kv["key"]).decode()] = keys.decode(kv)
    return revision


def _apply(result: dict[str, Any], members: dict[str, ServiceInstance]) -> int:
    """Apply one watch response's events; the revision of the last one (0 when it had none)."""
    if int(result.get("compact_revision", 0)):
        raise _Compacted
    if result.get("canceled"):
        reason = result.get("cancel_reason") or "canceled by etcd"
        raise RegistryUnavailable(f"etcd watch canceled: {reason}")
    last = 0
    for event in result.get("events") or ():
        kv = event["kv"]
        key = unb64(kv["key"]).decode()
        if event.get("type") == "DELETE":
            members.pop(key, None)
        else:
            members[key] = keys.decode(kv)
        last = max(last, int(kv.get("mod_revision", 0)))
    return last
