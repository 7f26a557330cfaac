"""Group commit: queued exports share one write, each gets its own count, overload is a 503."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from meshkit.plane.collector.commit import GroupCommit
from meshkit.plane.collector.errors import StoreUnavailable
from meshkit.plane.collector.record import SpanRecord
from tests.plane.collector.builders import record


class SlowWriter:
    """Blocks each write until released, recording the groups it was handed."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.groups: list[list[int]] = []
        self.fail = False

    def __call__(self, groups: list[Sequence[SpanRecord]]) -> list[int]:
        self.release.wait(5)
        if self.fail:
            raise StoreUnavailable("span store: disk I/O error")
        self.groups.append([len(g) for g in groups])
        return [len(g) for g in groups]


async def test_requests_queued_behind_a_write_share_the_next_one() -> None:
    writer = SlowWriter()
    with ThreadPoolExecutor(1) as pool:
        group = GroupCommit(writer, pool, max_pending=1000)
        first = asyncio.ensure_future(group.submit([record(1, 1)]))
        await asyncio.sleep(0.01)  # the first write is now in progress, blocked
        rest = [asyncio.ensure_future(group.submit([record(n, 1)] * n)) for n in range(2, 6)]
        await asyncio.sleep(0.01)
        writer.release.set()
        assert await first == 1
        assert await asyncio.gather(*rest) == [2, 3, 4, 5]
    assert writer.groups == [[1], [2, 3, 4, 5]] and group.commits == 2


async def test_a_full_queue_refuses_with_503_and_failures_reach_every_waiter() -> None:
    writer = SlowWriter()
    with ThreadPoolExecutor(1) as pool:
        group = GroupCommit(writer, pool, max_pending=10)
        busy = asyncio.ensure_future(group.submit([record(1, 1)]))
        await asyncio.sleep(0.01)
        queued = asyncio.ensure_future(group.submit([record(2, 1)] * 8))
        await asyncio.sleep(0)
        with pytest.raises(StoreUnavailable) as err:
            await group.submit([record(3, 1)] * 3)
        assert err.value.status == 503
        writer.fail = True
        writer.release.set()
        for waiter in (busy, queued):
            with pytest.raises(StoreUnavailable):
                await waiter
