"""Who registered an instance, so a service token can only replace or remove its own.

The owner (the token's name: "admin" or a service token's name) is recorded in the
instance's metadata under a reserved key, so it travels with the instance through every
registry backend and every plane that shares it. Callers may not set that key themselves.
The check-then-write of a registration runs under a per-instance lock, so two writers of
the same id cannot both pass the ownership check before either has written.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from meshkit.plane.auth import Principal
from meshkit.types import ServiceInstance

OWNER_KEY = "meshkit.owner"


def owner_of(instance: ServiceInstance) -> str | None:
    return instance.metadata.get(OWNER_KEY)


def stamp_owner(metadata: dict[str, str], principal: Principal) -> dict[str, str]:
    """A copy of `metadata` naming `principal` as the owner; the caller may not set the key."""
    if OWNER_KEY in metadata:
        raise ValueError(f"metadata: the key {OWNER_KEY!r} is reserved (the control plane sets it)")
    return {**metadata, OWNER_KEY: principal.name}


class KeyedLock:
    """One asyncio lock per key, created on demand and dropped when nobody holds or waits on it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)
