"""`eventually`: wait for a condition that a real server reaches on its own time."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(probe: Callable[[], Awaitable[T]], ok: Callable[[T], bool], within: float = 10.0) -> T:
    """Call `probe` until `ok(result)`; fail with the last result after `within` seconds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while True:
        result = await probe()
        if ok(result):
            return result
        if loop.time() > end:
            raise AssertionError(f"condition not reached in {within}s; last result: {result!r}")
        await asyncio.sleep(0.02)
