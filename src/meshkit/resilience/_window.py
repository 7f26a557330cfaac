"""Sliding-window counters: sums over the last `window` seconds, kept in time slices.

Finagle's `WindowedAdder`: the window is cut into `slices` buckets; adding touches only the
current bucket, and buckets older than the window are zeroed as time moves on. Adding is
O(1); reading the sum is O(slices). Both the retry budget and the breaker's failure rate
count this way, so per-request work stays a couple of integer operations.
"""

from __future__ import annotations

from meshkit.clock import Clock


class WindowedSum:
    __slots__ = ("_index", "_monotonic", "_pos", "_slots", "_width")

    def __init__(self, window: float, clock: Clock, slices: int = 10) -> None:
        self._monotonic = clock.monotonic  # bound once: read on every add
        self._width = window / slices
        self._slots = [0] * slices
        self._index = int(clock.monotonic() / self._width)  # absolute number of the current slice
        self._pos = self._index % slices  # its position in `_slots`

    def _roll(self, index: int) -> None:
        """Move to slice `index`, zeroing the slices that have left the window."""
        gap = index - self._index
        if gap <= 0:
            return
        slots = self._slots
        n = len(slots)
        if gap >= n:
            slots[:] = [0] * n
        else:
            for i in range(self._index + 1, index + 1):
                slots[i % n] = 0
        self._index = index
        self._pos = index % n

    def add(self, value: int) -> None:
        index = int(self._monotonic() / self._width)
        if index != self._index:
            self._roll(index)
        self._slots[self._pos] += value

    def sum(self) -> int:
        self._roll(int(self._monotonic() / self._width))
        return sum(self._slots)

    def clear(self) -> None:
        self._slots[:] = [0] * len(self._slots)


class OutcomeWindow:
    """Calls and failures over the last `window` seconds."""

    __slots__ = ("_failures", "_total")

    def __init__(self, window: float, clock: Clock) -> None:
        self._total = WindowedSum(window, clock)
        self._failures = WindowedSum(window, clock)

    def add(self, failed: bool) -> None:
        self._total.add(1)
        if failed:
            self._failures.add(1)

    def counts(self) -> tuple[int, int]:
        """(calls, failures) in the window."""
        return self._total.sum(), self._failures.sum()

    def clear(self) -> None:
        self._total.clear()
        self._failures.clear()
