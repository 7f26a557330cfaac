"""One loop timer for all of a transport's exchanges in flight, standing at the earliest deadline.

A timer per exchange (`loop.call_later`, then `cancel` when the answer comes) costs about
0.7 us on uvloop for a timeout that almost never fires; recording the deadline in a dict
and dropping it costs about 0.1 us. So exchanges are watched here, and a single timer is
set for the earliest deadline among them. When it fires, the exchanges whose time is up
time out and it is set again for the next; an exchange that ended meanwhile is simply no
longer in the dict. Deadlines keep the loop clock's precision (as asyncio, a deadline
within the clock's resolution of now counts as reached), and the timer is reset only when
a new deadline comes before the one it stands at: with one timeout for every call, it is
set about once per timeout period, not once per request. It runs until nothing is watched,
the transport's closing included: an exchange still in flight then keeps its deadline.
"""

from __future__ import annotations

import asyncio
import math
from typing import Protocol


class Watched(Protocol):
    def time_out(self) -> None:
        """The exchange's deadline passed: fail it."""


_RESOLUTION = 0.001  # uvloop's clock counts milliseconds: a deadline this close is reached


class ExchangeDeadlines:
    """`watch(exchange, timeout)` when an exchange starts; when it ends, `due.pop(exchange, None)`
    (a dict's own method, so ending an exchange runs no Python frame)."""

    __slots__ = ("_at", "_handle", "_loop", "due")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.due: dict[Watched, float] = {}  # exchange -> its deadline on the loop's clock
        self._handle: asyncio.TimerHandle | None = None
        self._at = math.inf  # when the timer fires; inf while it is not set

    def watch(self, exchange: Watched, timeout: float) -> None:
        at = self._loop.time() + timeout
        self.due[exchange] = at
        if at < self._at:
            self._set(at)

    def _set(self, at: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._at = at
        self._handle = self._loop.call_at(at, self._fire)

    def _fire(self) -> None:
        self._handle, self._at = None, math.inf
        reached = self._loop.time() + _RESOLUTION
        due = self.due
        late = [exchange for exchange, at in due.items() if at <= reached]
        for exchange in late:
            del due[exchange]
        if due:
            self._set(min(due.values()))
        for exchange in late:
            exchange.time_out()
