"""Group commit: exports that arrive while the writer is busy share its next transaction.

A SQLite commit costs about the same for 1 row as for thousands (the pages an index touches
are written to the WAL once per transaction), so a collector under load should not pay it
per request. Each `submit` queues its spans; the single writer thread drains the whole
queue into one transaction and answers every waiting request with its own count. At low
load a request still commits alone, at once. This is the group commit of databases (Gray
and Reuter, "Transaction Processing", 9.4.7). Past `max_pending` queued spans the store is
behind: `submit` refuses with 503 so OTLP exporters back off and retry, instead of the
queue growing without bound.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor

from meshkit.plane.collector.errors import CollectorError, StoreUnavailable
from meshkit.plane.collector.record import SpanRecord

WriteGroups = Callable[[list[Sequence[SpanRecord]]], list[int]]
Waiter = tuple[Sequence[SpanRecord], asyncio.Future[int], asyncio.AbstractEventLoop]


class GroupCommit:
    def __init__(self, write_groups: WriteGroups, executor: Executor, *, max_pending: int) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending: must be an integer >= 1, got {max_pending!r}")
        self._write_groups = write_groups
        self._executor = executor
        self.max_pending = max_pending
        self._lock = threading.Lock()
        self._queue: list[Waiter] = []
        self._queued_spans = 0
        self._scheduled = False
        self.commits = 0  # transactions written, to compare with requests served

    async def submit(self, records: Sequence[SpanRecord]) -> int:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        with self._lock:
            if self._queued_spans and self._queued_spans + len(records) > self.max_pending:
                raise StoreUnavailable(f"span store: {self._queued_spans} spans already wait to be written")
            waiter = (records, future, loop)
            self._queue.append(waiter)
            self._queued_spans += len(records)
            schedule, self._scheduled = not self._scheduled, True
        if schedule:
            try:
                self._executor.submit(self._drain)
            except RuntimeError:  # the executor was shut down: the store is closed
                with self._lock:
                    self._queue.remove(waiter)
                    self._queued_spans -= len(records)
                    self._scheduled = False
                raise StoreUnavailable("span store: closed") from None
        return await future

    def _drain(self) -> None:
        with self._lock:
            waiters, self._queue = self._queue, []
            self._queued_spans = 0
            self._scheduled = False
        if not waiters:
            return
        try:
            counts = self._write_groups([records for records, _, _ in waiters])
        except CollectorError as exc:
            for _, future, loop in waiters:
                loop.call_soon_threadsafe(_fail, future, exc)
            return
        self.commits += 1
        for (_, future, loop), count in zip(waiters, counts, strict=True):
            loop.call_soon_threadsafe(_succeed, future, count)


def _succeed(future: asyncio.Future[int], count: int) -> None:
    if not future.done():  # the sender may have gone (a cancelled request)
        future.set_result(count)


def _fail(future: asyncio.Future[int], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
