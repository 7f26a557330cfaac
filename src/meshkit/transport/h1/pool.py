"""The keep-alive pool of one endpoint: bounded, last-in first-out, idle connections expire.

A connection returns to the pool only after a complete response on a connection the
server keeps open; anything else (an error, `Connection: close`, a cancelled exchange)
closes it. Idle connections are taken newest first, so the warm ones stay warm and the
rest age out after `keepalive_timeout` (aiohttp's and urllib3's behaviour; a timer per
pool sweeps them, none per connection). `limit` bounds the connections open at once,
idle or busy; callers past it wait in line for one to be released or closed.
"""

from __future__ import annotations

import asyncio
from collections import deque

from meshkit.transport.h1.connection import H1Connection


class EndpointPool:
    """Idle and in-use connections to one `host:port`."""

    __slots__ = ("_loop", "_sweeper", "_waiters", "closed", "idle", "keepalive_timeout", "limit", "max_idle",
                 "open")  # fmt: skip

    def __init__(
        self, loop: asyncio.AbstractEventLoop, *, limit: int, max_idle: int, keepalive_timeout: float
    ) -> None:
        self._loop = loop
        self.limit = limit  # 0: unlimited
        self.max_idle = max_idle
        self.keepalive_timeout = keepalive_timeout
        self.idle: list[H1Connection] = []
        self.open = 0  # connections counted against `limit`: idle, busy or being opened
        self._waiters: deque[asyncio.Future[H1Connection | None]] = deque()
        self._sweeper: asyncio.TimerHandle | None = None
        self.closed = False

    def take_idle(self) -> H1Connection | None:
        """The newest idle connection still fit for use, closing the expired and dead on the way."""
        idle = self.idle
        oldest = self._loop.time() - self.keepalive_timeout
        while idle:
            conn = idle.pop()
            if conn.usable() and conn.idle_since > oldest:
                return conn
            self.discard(conn)
        return None

    def may_open(self) -> bool:
        return self.limit == 0 or self.open < self.limit

    async def wait_turn(self) -> H1Connection | None:
        """Wait for a released connection (returned) or a free slot (None: open one)."""
        waiter: asyncio.Future[H1Connection | None] = self._loop.create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                conn = waiter.result()  # handed over as we were cancelled: pass it on
                if conn is not None:
                    self.release(conn)
                else:
                    self.forget_slot()
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise

    def release(self, conn: H1Connection) -> None:
        """Return `conn` after a complete, keep-alive response."""
        if self.closed or not conn.usable():
            self.discard(conn)
            return
        if self._waiters and self._wake_one(conn):  # nobody waiting, usually: no call
            return
        if len(self.idle) >= self.max_idle:
            self.discard(conn)
            return
        conn.idle_since = self._loop.time()
        self.idle.append(conn)
        if self._sweeper is None:
            self._sweeper = self._loop.call_later(self.keepalive_timeout, self._sweep)

    def discard(self, conn: H1Connection) -> None:
        """Close `conn` and free its slot."""
        conn.close()
        self.forget_slot()

    def forget_slot(self) -> None:
        """Free a slot (its connection closed, or was never made): the first waiter gets it."""
        if not self._wake_one(None):
            self.open -= 1

    def _wake_one(self, conn: H1Connection | None) -> bool:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return True
        return False

    def _sweep(self) -> None:
        self._sweeper = None
        oldest = self._loop.time() - self.keepalive_timeout
        keep = []
        for conn in self.idle:
            if conn.usable() and conn.idle_since > oldest:
                keep.append(conn)
            else:
                self.discard(conn)
        self.idle[:] = keep
        if keep:
            self._sweeper = self._loop.call_later(self.keepalive_timeout / 2, self._sweep)

    def close(self) -> None:
        """Close the idle connections; busy ones close when released."""
        self.closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conn in self.idle:
            conn.close()
        self.idle.clear()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.cancel()

    @property
    def empty(self) -> bool:
        return self.open <= 0 and not self._waiters
