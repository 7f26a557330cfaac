"""Fixtures: a collector over an in-memory store on a fake clock."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from meshkit.clock import FakeClock
from meshkit.plane.collector import SpanStore, TraceCollector


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def collector(clock: FakeClock) -> AsyncIterator[TraceCollector]:
    col = TraceCollector(SpanStore(None, clock=clock), max_bytes=64 * 1024)
    yield col
    await col.close()
