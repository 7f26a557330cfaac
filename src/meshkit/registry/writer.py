"""Group commit: callers queue writes, one task commits them in batches.

Databases have shared one log flush among many transactions since IMS Fast Path: while
one batch is being committed, new writes queue up, and the next transaction takes all of
them (up to `batch_max`). One caller alone pays one commit per write; a hundred concurrent
callers share one fsync. Each caller awaits a future that the commit function resolves
only once its batch is durable. A failed commit fails that batch's futures and the writer
goes on with the next: it never dies silently.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from meshkit.errors import RegistryUnavailable

log = logging.getLogger(__name__)


class Op:
    """One queued write: what to do (`kind`) to which `key`, and the caller's future."""

    __slots__ = ("future", "key", "kind", "value")

    def __init__(self, kind: str, key: str, value: Any, future: asyncio.Future[Any]) -> None:
        self.kind, self.key, self.value, self.future = kind, key, value, future


class GroupCommitWriter:
    def __init__(self, commit: Callable[[list[Op]], Awaitable[None]], batch_max: int) -> None:
        self._commit = commit
        self._batch_max = batch_max
        self._queue: deque[Op] = deque()
        self._work = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Commit everything already queued, then end the writer task."""
        self._stopping = True
        self._work.set()
        if self._task is not None:
            await self._task
            self._task = None

    def submit(self, kind: str, key: str, value: Any) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append(Op(kind, key, value, future))
        self._work.set()
        return future

    async def _run(self) -> None:
        queue = self._queue
        while True:
            await self._work.wait()
            if not queue:
                if self._stopping:
                    return
                self._work.clear()
                continue
            batch = [queue.popleft() for _ in range(min(self._batch_max, len(queue)))]
            try:
                await self._commit(batch)
            except Exception as e:
                log.exception("registry commit failed")
                error = RegistryUnavailable(f"registry commit failed: {e}")
                for op in batch:
                    if not op.future.done():
                        op.future.set_exception(error)
