"""SQLite persistence for the embedded registry: one file, WAL, one writer thread.

The registry's truth lives in memory (reads never touch SQLite); this file only makes it
survive a restart. All SQLite work runs on one dedicated thread (sqlite3 connections are
single-threaded, and one writer is what WAL wants), and a whole batch of writes crosses
to that thread in a single hop and commits in a single transaction: the group commit that
lets many concurrent registrations share one fsync. aiosqlite would cost a thread hop per
statement for the same effect, so plain sqlite3 behind a one-thread executor is used.

Durability: in WAL mode a committed transaction is in the WAL file when COMMIT returns, so
it survives kill -9 of the process with synchronous=NORMAL already; synchronous=FULL (the
default here) also fsyncs the WAL on every commit, so it survives power loss on a disk
that honours fsync. The database is opened with an exclusive lock: one process, one writer.
"""

from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

import orjson

from meshkit.errors import RegistryUnavailable
from meshkit.types import HealthCheck, ServiceInstance, ServiceState

Synchronous = Literal["FULL", "NORMAL"]
DB_FILE = "registry.db"
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS instances (id TEXT PRIMARY KEY, service TEXT NOT NULL, body BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
)


def encode_instance(inst: ServiceInstance) -> bytes:
    return orjson.dumps(
        {
            "id": inst.service_id,
            "name": inst.service_name,
            "address": inst.address,
            "port": inst.port,
            "tags": inst.tags,
            "metadata": inst.metadata,
            "state": inst.state.value,
            "weight": inst.weight,
            "zone": inst.zone,
            "version": inst.version,
            "check": asdict(inst.check) if inst.check is not None else None,
            "ttl": inst.ttl,
        }
    )


def decode_instance(body: bytes) -> ServiceInstance:
    d = orjson.loads(body)
    check = HealthCheck(**d["check"]) if d["check"] is not None else None
    return ServiceInstance(
        d["id"], d["name"], d["address"], d["port"], d["tags"], d["metadata"], ServiceState(d["state"]),
        d["weight"], d["zone"], d["version"], check, d["ttl"],
    )  # fmt: skip


class Loaded:
    __slots__ = ("instances", "revision", "settings")

    def __init__(self, instances: list[ServiceInstance], settings: dict[str, bytes], revision: int) -> None:
        self.instances = instances
        self.settings = settings
        self.revision = revision


class SqliteStore:
    """The registry file in `data_dir`; every method runs its SQL on the one writer thread."""

    def __init__(self, data_dir: Path, synchronous: Synchronous = "FULL") -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous: must be 'FULL' or 'NORMAL', got {synchronous!r}")
        self.path = data_dir / DB_FILE
        self._synchronous = synchronous
        self._conn: sqlite3.Connection | None = None
        self._thread: ThreadPoolExecutor | None = None

    async def open(self) -> Loaded:
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="meshkit-registry-db")
        loaded: Loaded = await self._run(self._open)
        return loaded

    async def write(
        self,
        puts: list[ServiceInstance],
        deletes: list[str],
        settings: list[tuple[str, bytes]],
        revision: int,
    ) -> None:
        """Commit one batch in one transaction; returns only once it is durable."""
        await self._run(self._write, puts, deletes, settings, revision)

    async def close(self) -> None:
        if self._conn is not None:
            await self._run(self._conn.close)
            self._conn = None
        if self._thread is not None:
            self._thread.shutdown(wait=True)
            self._thread = None

    async def _run(self, fn: Any, *args: Any) -> Any:
        if self._thread is None:
            raise RegistryUnavailable("registry store is not open")
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    def _open(self) -> Loaded:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=0.5)
        try:
            conn.execute("PRAGMA locking_mode=EXCLUSIVE")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            conn.execute("BEGIN IMMEDIATE")  # takes the exclusive lock now, not at the first write
            for statement in SCHEMA:
                conn.execute(statement)
            conn.execute("COMMIT")
        except sqlite3.OperationalError as e:
            conn.close()
            msg = f"data_dir: cannot open {self.path} ({e}); is another process using it?"
            raise RegistryUnavailable(msg) from e
        instances = [decode_instance(body) for (body,) in conn.execute("SELECT body FROM instances")]
        settings = dict(conn.execute("SELECT key, value FROM settings").fetchall())
        row = conn.execute("SELECT value FROM meta WHERE key = 'revision'").fetchone()
        self._conn = conn
        return Loaded(instances, settings, row[0] if row else 0)

    def _write(
        self,
        puts: list[ServiceInstance],
        deletes: list[str],
        settings: list[tuple[str, bytes]],
        revision: int,
    ) -> None:
        conn = self._conn
        if conn is None:
            raise RegistryUnavailable("registry store is closed")
        rows = [(i.service_id, i.service_name, encode_instance(i)) for i in puts]
        conn.execute("BEGIN IMMEDIATE")
        try:
            if deletes:
                conn.executemany("DELETE FROM instances WHERE id = ?", [(i,) for i in deletes])
            if rows:
                conn.executemany(
                    "INSERT OR REPLACE INTO instances (id, service, body) VALUES (?, ?, ?)", rows
                )
            if settings:
                conn.executemany("INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)", settings)
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('revision', ?)", (revision,))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
