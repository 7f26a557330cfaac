"""LeaderElection: one of several control planes on one etcd does a job, the others stand by.

The recipe of etcd's own `concurrency.Election`: a candidate takes a lease of `ttl`
seconds and creates the election key on it in a transaction that succeeds only if the key
does not exist; whoever creates it leads, and keeps the lease alive (a keep-alive every
ttl/3). The others watch the key and try again the moment it is deleted, which happens
when the leader resigns (its lease is revoked) or stops refreshing it (crashed, cut off:
etcd expires the lease after `ttl`). A leader that cannot refresh its lease for 2/3 of
the ttl steps down on its own before etcd could let another take over, so two leaders
never overlap as long as clocks run at the same rate. The control plane runs its health
checker only while `is_leader`, so no instance is probed twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket

from meshkit.errors import RegistryUnavailable
from meshkit.registry.etcd import keys
from meshkit.registry.etcd.client import EtcdClient, EtcdRequestFailed, unb64
from meshkit.registry.etcd.registry import EtcdRegistry
from meshkit.types import validate_service_name

log = logging.getLogger(__name__)


class LeaderElection:
    """Campaign for `name` until elected; hold it while the lease lives; see the module docstring."""

    def __init__(
        self,
        etcd: EtcdRegistry | EtcdClient,
        name: str,
        *,
        ttl: float = 5.0,
        candidate: str | None = None,
        prefix: str | None = None,
    ) -> None:
        """`prefix` defaults to the registry's (or /meshkit/ for a bare client): planes sharing it compete."""
        validate_service_name(name, "name")
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or ttl < 1:
            raise ValueError(
                f"ttl: must be a number of seconds >= 1 (etcd leases count whole seconds), got {ttl!r}"
            )
        self._client = etcd.client if isinstance(etcd, EtcdRegistry) else etcd
        if prefix is None:
            prefix = etcd.keys.prefix.decode() if isinstance(etcd, EtcdRegistry) else "/meshkit/"
        self.key = keys.Keyspace(prefix).election(name)
        self.name = name
        self.ttl = float(ttl)
        self.candidate = candidate or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        self._lease = 0
        self._elected = asyncio.Event()
        self._deposed = asyncio.Event()
        self._deposed.set()
        self._task: asyncio.Task[None] | None = None

    @property
    def is_leader(self) -> bool:
        return self._elected.is_set()

    def start(self) -> None:
        """Begin campaigning in the background (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._campaign())

    async def wait_for_leadership(self) -> None:
        self.start()
        await self._elected.wait()

    async def wait_for_loss(self) -> None:
        """Return once this candidate does not lead (at once if it does not)."""
        await self._deposed.wait()

    async def leader(self) -> str | None:
        """The candidate that holds the election now, as etcd says."""
        kvs, _ = await self._client.range(self.key)
        return unb64(kvs[0].get("value")).decode() if kvs else None

    async def resign(self) -> None:
        """Stop campaigning and hand over at once (the lease is revoked, the key goes with it)."""
        await self._stop()
        lease, self._lease = self._lease, 0
        if lease:
            with contextlib.suppress(RegistryUnavailable, EtcdRequestFailed):
                await self._client.revoke(lease)

    async def close(self, *, resign: bool = True) -> None:
        """Stop; with resign=False the lease is left to expire, as when the process dies."""
        if resign:
            await self.resign()
        else:
            await self._stop()
            self._lease = 0

    async def _stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._set_leader(False)

    def _set_leader(self, leader: bool) -> None:
        if leader == self.is_leader:
            return
        log.info("election %s: %s %s", self.name, self.candidate, "elected" if leader else "no longer leads")
        (self._elected.set if leader else self._elected.clear)()
        (self._deposed.clear if leader else self._deposed.set)()

    async def _campaign(self) -> None:
        while True:
            try:
                revision = await self._try_acquire()
                if revision == 0:
                    await self._hold()
                else:
                    await self._wait_for_vacancy(revision)
            except (RegistryUnavailable, EtcdRequestFailed) as e:
                self._set_leader(False)
                log.debug("election %s: %s", self.name, e)
                await asyncio.sleep(self.ttl / 3)

    async def _try_acquire(self) -> int:
        """0 once elected; else the revision at which another candidate held the key."""
        lease = await self._client.grant(self.ttl)
        put = keys.put(self.key, self.candidate.encode(), lease)
        reply = await self._client.txn([keys.absent(self.key)], [put], [keys.get(self.key)])
        if reply.get("succeeded"):
            self._lease = lease
            self._set_leader(True)
            return 0
        held = keys.first_range(reply)
        if held and unb64(held[0].get("value")).decode() == self.candidate:  # ours: a retried txn
            self._lease = int(held[0].get("lease", 0))
            if self._lease != lease:
                await self._client.revoke(lease)
            self._set_leader(True)
            return 0
        await self._client.revoke(lease)
        return int(reply["header"]["revision"])

    async def _hold(self) -> None:
        """Keep the lease alive; return (deposed) when it is gone or cannot be refreshed in time."""
        loop = asyncio.get_running_loop()
        refreshed = loop.time()
        while True:
            await asyncio.sleep(self.ttl / 3 if loop.time() - refreshed < self.ttl / 3 else self.ttl / 6)
            sent = loop.time()
            try:
                alive = await self._client.keepalive_once(self._lease) > 0
            except RegistryUnavailable:
                if loop.time() - refreshed >= self.ttl * 2 / 3:
                    self._set_leader(False)
                    return
                continue
            if not alive:
                self._set_leader(False)
                return
            refreshed = sent

    async def _wait_for_vacancy(self, revision: int) -> None:
        """Until the key is deleted after `revision` (the leader resigned or its lease expired)."""
        async with contextlib.aclosing(self._client.watch(self.key, self.key + b"\0", revision + 1)) as watch:
            async for result in watch:
                if result.get("canceled") or any(e.get("type") == "DELETE" for e in result.get("events", ())):
                    return
