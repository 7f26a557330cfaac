"""Where a broken etcd watch resumes: after the last event applied, never after a header's revision.

etcd may split a replay of history (a watch started behind the store) over several responses,
each headed with the store's CURRENT revision. Resuming from a header's revision after a break
in the middle of such a replay would skip the events not yet delivered. `ScriptedEtcd` is a
test double of `EtcdClient`'s `range`/`watch` (the responses etcd's JSON gateway sends), so the
break can fall exactly mid-replay; the real-etcd tests in test_registry.py cover the rest.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from typing import Any

from meshkit.errors import RegistryUnavailable
from meshkit.registry.etcd import keys
from meshkit.registry.etcd.client import b64
from meshkit.registry.etcd.watch import follow
from meshkit.types import ServiceInstance

START, END = b"/meshkit/instances/", b"/meshkit/instances0"


def put_event(port: int, revision: int) -> dict[str, Any]:
    inst = ServiceInstance(f"users-{port}", "users", "127.0.0.1", port)
    key = START + f"users/{inst.service_id}".encode()
    kv = {"key": b64(key), "value": b64(keys.encode(inst, 0.0)), "mod_revision": str(revision)}
    return {"type": "PUT", "kv": kv}


class ScriptedEtcd:
    """Answers `range` with nothing at revision 10 and each `watch` with the next script."""

    def __init__(self, scripts: list[list[dict[str, Any]]]) -> None:
        self.scripts = scripts
        self.watched_from: list[int] = []

    async def range(self, key: bytes, end: bytes | None = None) -> tuple[list[dict[str, Any]], int]:
        return [], 10

    async def watch(
        self, key: bytes, end: bytes, start_revision: int
    ) -> AsyncGenerator[dict[str, Any], None]:
        self.watched_from.append(start_revision)
        for response in self.scripts.pop(0):
            yield response
        raise RegistryUnavailable("stream broke")


async def test_a_watch_broken_mid_replay_resumes_after_the_last_event_it_applied() -> None:
    store_now = {"header": {"revision": "40"}}  # the store is at 40 while history from 11 replays
    etcd = ScriptedEtcd(
        [
            [{**store_now, "created": True}, {**store_now, "events": [put_event(1, 11), put_event(2, 12)]}],
            [{**store_now, "events": [put_event(3, 13)]}],
        ]
    )
    seen: list[tuple[list[int], int]] = []
    stream = follow(etcd, None, START, END)  # type: ignore[arg-type]
    async with contextlib.aclosing(stream):
        async for snap in stream:
            seen.append((sorted(i.port for i in snap.instances), snap.revision))
            if len(seen) == 3:
                break
    assert etcd.watched_from == [11, 13]  # not 41: events 13..40 were still to come
    assert seen == [([], 10), ([1, 2], 12), ([1, 2, 3], 13)]


async def test_responses_without_events_do_not_move_the_resume_point() -> None:
    progress = {"header": {"revision": "99"}}  # a progress notification, or the "created" answer
    etcd = ScriptedEtcd(
        [[{**progress, "created": True}, progress], [{**progress, "events": [put_event(5, 11)]}]]
    )
    stream = follow(etcd, None, START, END)  # type: ignore[arg-type]
    async with contextlib.aclosing(stream):
        snaps = [snap async for snap in _first(stream, 2)]
    assert etcd.watched_from == [11, 11]
    assert [sorted(i.port for i in s.instances) for s in snaps] == [[], [5]]


async def _first(stream: AsyncGenerator[Any, None], n: int) -> AsyncGenerator[Any, None]:
    async for item in stream:
        yield item
        n -= 1
        if n == 0:
            return
