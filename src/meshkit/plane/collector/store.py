"""The span store: SQLite in the data directory, with retention by age and by count.

One table of spans, indexed for the searches the API offers (service and time, operation,
duration, trace id, errors, caller spans for the dependency graph). Each export request is
one transaction. Retention is incremental and cheap: spans older than `max_age` are refused
at the door or deleted a bounded batch at a time by start-time index, and past `max_spans`
the oldest-inserted spans go by rowid range; every removal is counted in `dropped_spans`.

SQLite work runs on a dedicated writer thread (concurrent exports share a transaction, see
`commit.py`) and, for a file store in WAL mode, a separate
reader thread with its own connection, so ingest never blocks the event loop and searches
read a consistent snapshot while a write is in flight (SQLite's WAL: readers do not block
the writer, nor the writer readers). An in-memory store (`path=None`) shares one thread.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import orjson

from meshkit.clock import SYSTEM_CLOCK, Clock
from meshkit.plane.collector.commit import GroupCommit
from meshkit.plane.collector.errors import StoreUnavailable
from meshkit.plane.collector.record import SpanRecord

T = TypeVar("T")
DAY = 86400.0
COLUMNS = (
    "trace_id, span_id, parent_span_id, service, name, kind, start_ns, end_ns, duration_ms, error,"
    " peer_service, attributes, events, status_message"
)
SCHEMA = """
CREATE TABLE IF NOT EXISTS spans (
    id INTEGER PRIMARY KEY, trace_id TEXT NOT NULL, span_id TEXT NOT NULL, parent_span_id TEXT,
    service TEXT NOT NULL, name TEXT NOT NULL, kind INTEGER NOT NULL, start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL, duration_ms REAL NOT NULL, error INTEGER NOT NULL, peer_service TEXT,
    attributes TEXT, events TEXT, status_message TEXT
);
CREATE INDEX IF NOT EXISTS spans_service_start ON spans (service, start_ns);
CREATE INDEX IF NOT EXISTS spans_name_start ON spans (name, start_ns);
CREATE INDEX IF NOT EXISTS spans_start ON spans (start_ns);
CREATE INDEX IF NOT EXISTS spans_duration ON spans (duration_ms);
CREATE UNIQUE INDEX IF NOT EXISTS spans_trace ON spans (trace_id, span_id);
CREATE INDEX IF NOT EXISTS spans_error_start ON spans (start_ns) WHERE error = 1;
CREATE INDEX IF NOT EXISTS spans_caller_start ON spans (start_ns) WHERE kind IN (3, 4);
"""
PRAGMAS = (
    "journal_mode = WAL",
    "synchronous = NORMAL",
    "temp_store = MEMORY",
    "cache_size = -65536",
    "mmap_size = 1073741824",  # reads of a large store come straight from the page cache
)
INSERT = f"INSERT OR IGNORE INTO spans ({COLUMNS}) VALUES ({', '.join('?' * 14)})"


def _dumps(value: object) -> str | None:
    return orjson.dumps(value).decode() if value else None


def span_row(r: SpanRecord) -> tuple[object, ...]:
    return (
        *r[:11],
        _dumps(r.attributes),
        _dumps(r.events),
        r.status_message or None,
    )


class SpanStore:
    def __init__(
        self,
        path: str | Path | None = None,
        *,
        max_age: float = 7 * DAY,
        max_spans: int = 1_000_000,
        expire_batch: int = 10_000,
        max_pending_spans: int = 200_000,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if not max_age > 0:
            raise ValueError(f"max_age: must be a number of seconds > 0, got {max_age!r}")
        if isinstance(max_spans, bool) or not isinstance(max_spans, int) or max_spans < 1:
            raise ValueError(f"max_spans: must be an integer >= 1, got {max_spans!r}")
        if max_pending_spans < 1:
            raise ValueError(f"max_pending_spans: must be an integer >= 1, got {max_pending_spans!r}")
        if expire_batch < 1:
            raise ValueError(f"expire_batch: must be an integer >= 1, got {expire_batch!r}")
        self.path = Path(path) if path is not None else None
        self.max_age = max_age
        self.max_spans = max_spans
        self.expire_batch = expire_batch
        self.clock = clock
        self.dropped_by_age = 0
        self.dropped_by_size = 0
        self._writer_pool = ThreadPoolExecutor(1, thread_name_prefix="meshkit-spans-write")
        self._write = self._connect()
        self._write.executescript(SCHEMA)
        if self.path is None:
            self._reader_pool, self._read = self._writer_pool, self._write
        else:
            self._reader_pool = ThreadPoolExecutor(1, thread_name_prefix="meshkit-spans-read")
            self._read = self._connect()
            self._read.execute("PRAGMA query_only = 1")
        self._count = int(self._write.execute("SELECT COUNT(*) FROM spans").fetchone()[0])
        self._group = GroupCommit(self.write_groups, self._writer_pool, max_pending=max_pending_spans)
        self._closed = False

    def _connect(self) -> sqlite3.Connection:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(self.path or ":memory:"), isolation_level=None, check_same_thread=False)
        for pragma in PRAGMAS:
            conn.execute(f"PRAGMA {pragma}")
        return conn

    @property
    def dropped_spans(self) -> int:
        """Spans removed or refused by retention (age plus size): the metric a flood shows in."""
        return self.dropped_by_age + self.dropped_by_size

    @property
    def span_count(self) -> int:
        return self._count

    async def insert(self, records: Sequence[SpanRecord]) -> int:
        """Store one export's spans, off the event loop; returns how many were new.

        Concurrent exports share one transaction (`GroupCommit`). A span already stored
        (same trace and span id, as an exporter's retry sends) is ignored, by the unique
        index on (trace_id, span_id). Raises `StoreUnavailable` (503) when the writer is behind.
        """
        return await self._group.submit(records)

    def insert_blocking(self, records: Sequence[SpanRecord]) -> int:
        """`insert` for threads outside the event loop (the OpenTelemetry SDK's export thread)."""
        return self._writer_pool.submit(self.insert_sync, records).result()

    def insert_sync(self, records: Sequence[SpanRecord]) -> int:
        """Insert on the calling thread; only the writer thread (or a benchmark) calls this."""
        return self.write_groups([records])[0]

    def write_groups(self, groups: list[Sequence[SpanRecord]]) -> list[int]:
        """Write several exports in one transaction, then apply retention; new spans per export."""
        cutoff = int((self.clock.time() - self.max_age) * 1e9)
        conn = self._write
        counts = []
        refused = 0
        try:
            conn.execute("BEGIN")
            for records in groups:
                rows = [span_row(r) for r in records if r.start_ns >= cutoff]
                refused += len(records) - len(rows)
                counts.append(conn.executemany(INSERT, rows).rowcount if rows else 0)
            self._count += sum(counts)
            expired = self._expire(cutoff)
            evicted = self._evict()
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._count = int(conn.execute("SELECT COUNT(*) FROM spans").fetchone()[0])
            raise StoreUnavailable(f"span store: {exc}") from exc
        self.dropped_by_age += refused + expired
        self.dropped_by_size += evicted
        return counts

    def _expire(self, cutoff: int) -> int:
        deleted = self._write.execute(
            "DELETE FROM spans WHERE id IN (SELECT id FROM spans WHERE start_ns < ? LIMIT ?)",
            (cutoff, self.expire_batch),
        ).rowcount
        self._count -= deleted
        return deleted

    def _evict(self) -> int:
        excess = self._count - self.max_spans
        if excess <= 0:
            return 0
        conn = self._write
        row = conn.execute("SELECT id FROM spans ORDER BY id LIMIT 1 OFFSET ?", (excess - 1,)).fetchone()
        deleted = conn.execute("DELETE FROM spans WHERE id <= ?", (row[0],)).rowcount
        self._count -= deleted
        return deleted

    async def expire(self) -> int:
        """Apply age retention now (the plane may call this on a timer when no spans arrive);
        returns how many spans aged out (at most `expire_batch` a call)."""
        before = self.dropped_by_age
        await self.insert([])
        return self.dropped_by_age - before

    async def read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        """Run `query(connection)` on the reader thread and return its result."""
        loop = asyncio.get_running_loop()
        try:
            pending = loop.run_in_executor(self._reader_pool, self._read_guarded, query)
        except RuntimeError:  # the executor was shut down
            raise StoreUnavailable("span store: closed") from None
        return await pending

    def _read_guarded(self, query: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return query(self._read)
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"span store: {exc}") from exc

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._writer_pool.shutdown(wait=True)
        self._reader_pool.shutdown(wait=True)
        self._read.close()
        if self._read is not self._write:
            self._write.close()
