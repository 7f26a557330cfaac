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


class Compacted(Exception):
    """etcd no longer has the history a watch asked for (it was compacted up to `revision`)."""

    def __init__(self, revision: int) -> None:
        super().__init__(revision)
        self.revision = revision


async def watch_events(
    client: EtcdClient, start: bytes, end: bytes, after: int
) -> AsyncGenerator[tuple[list[dict[str, Any]], int], None]:
    """Each watch response's events for [start, end) after revision `after`, with the revision of
    its last event. A broken stream is opened again on another member after the last event
    delivered (never after a response header's revision: etcd may split a replay of history
    over several responses, each headed with the store's current revision), so nothing is
    missed or repeated. `Compacted` when that history is gone; `RegistryUnavailable` when no
    member will serve the watch."""
    revision = after
    while True:
        delivered = False
        try:
            async with contextlib.aclosing(client.watch(start, end, revision + 1)) as stream:
                async for result in stream:
                    delivered = True
                    compacted = int(result.get("compact_revision", 0))
                    if compacted:
                        raise Compacted(compacted)
                    if result.get("canceled"):
                        reason = result.get("cancel_reason") or "canceled by etcd"
                        raise RegistryUnavailable(f"etcd watch canceled: {reason}")
                    events = result.get("events")
                    if events:
                        revision = max(revision, *(int(e["kv"].get("mod_revision", 0)) for e in events))
                        yield events, revision
        except RegistryUnavailable:
            if not delivered:  # no member would take the watch: let the caller back off
                raise
            # the stream broke after it had worked: resume after `revision` on another member


async def follow(
    client: EtcdClient, service: str | None, start: bytes, end: bytes
) -> AsyncGenerator[Snapshot, None]:
    name = service or ""
    members: dict[str, ServiceInstance] = {}
    revision = await _list(client, start, end, members)
    yield Snapshot(name, tuple(members.values()), revision)
    while True:
        try:
            async with contextlib.aclosing(watch_events(client, start, end, revision)) as stream:
                async for events, revision in stream:
                    _apply(events, members)
                    yield Snapshot(name, tuple(members.values()), revision)
        except Compacted:
            revision = await _list(client, start, end, members)
            yield Snapshot(name, tuple(members.values()), revision)


async def _list(client: EtcdClient, start: bytes, end: bytes, members: dict[str, ServiceInstance]) -> int:
    kvs, revision = await client.range(start, end)
    members.clear()
    for kv in kvs:
        members[unb64(kv["key"]).decode()] = keys.decode(kv)
    return revision


def _apply(events: list[dict[str, Any]], members: dict[str, ServiceInstance]) -> None:
    for event in events:
        kv = event["kv"]
        key = unb64(kv["key"]).decode()
        if event.get("type") == "DELETE":
            members.pop(key, None)
        else:
            members[key] = keys.decode(kv)
