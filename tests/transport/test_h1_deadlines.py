"""ExchangeDeadlines: one loop timer for many exchanges, each timed out once, at its own deadline."""

from __future__ import annotations

import asyncio

from meshkit.transport.h1.deadlines import ExchangeDeadlines


class Exchange:
    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log
        self.done = asyncio.Event()

    def time_out(self) -> None:
        self.log.append(self.name)
        self.done.set()


async def test_each_exchange_times_out_once_in_deadline_order() -> None:
    deadlines = ExchangeDeadlines(asyncio.get_running_loop())
    log: list[str] = []
    late, early, ended = Exchange("late", log), Exchange("early", log), Exchange("ended", log)
    deadlines.watch(late, 0.15)
    deadlines.watch(early, 0.02)  # comes before the timer's deadline: the timer is set again for it
    deadlines.watch(ended, 0.01)
    deadlines.due.pop(ended)  # its answer came: it never times out
    await asyncio.wait_for(late.done.wait(), 5)
    await asyncio.sleep(0.05)
    assert log == ["early", "late"]
    assert len(deadlines.due) == 0


async def test_a_long_deadline_does_not_hold_back_a_short_one_watched_after_it() -> None:
    deadlines = ExchangeDeadlines(asyncio.get_running_loop())
    log: list[str] = []
    slow, quick = Exchange("slow", log), Exchange("quick", log)
    deadlines.watch(slow, 30.0)
    deadlines.watch(quick, 0.01)
    await asyncio.wait_for(quick.done.wait(), 5)  # not 30 s: the timer moved to the earlier deadline
    assert log == ["quick"]
    assert len(deadlines.due) == 1


async def test_an_exchange_watched_again_keeps_only_its_new_deadline() -> None:
    deadlines = ExchangeDeadlines(asyncio.get_running_loop())
    log: list[str] = []
    reused = Exchange("reused", log)  # a pooled connection: one exchange after another
    deadlines.watch(reused, 0.01)
    deadlines.due.pop(reused)
    deadlines.watch(reused, 0.5)
    await asyncio.sleep(0.1)  # the first deadline has passed (the timer set for it has fired)
    assert log == []
    await asyncio.wait_for(reused.done.wait(), 5)
    await asyncio.sleep(0.05)
    assert log == ["reused"]
