"""Fixtures for the chaos tests: upstream processes that are always killed after the test, and
the test runner's own heap kept out of the garbage collector's way while they measure."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest

from tests.chaos.support import UpstreamProcess

StartProcesses = Callable[..., Awaitable[list[UpstreamProcess]]]


@pytest.fixture(autouse=True)
def runner_heap_frozen() -> Iterator[None]:
    """Freeze what exists before the test (`gc.freeze`) and unfreeze it after.

    In a full `make test` the pytest process holds every collected test module, about 175,000
    objects; one full collection of them took 110-180 ms here (measured with `gc.callbacks`),
    and when one fell inside a latency window it stalled every call in flight and read as a
    120-140 ms p99 (the instance-kill test failed twice so, passing alone). That heap is the
    test runner's, not the mesh's: frozen, the collector walks only what the test makes.
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@pytest.fixture
async def upstream_processes() -> AsyncIterator[StartProcesses]:
    """`await upstream_processes(3, mode="ok", delay_ms=5)` starts that many; all are killed afterwards."""
    started: list[UpstreamProcess] = []

    async def start(count: int, **options: object) -> list[UpstreamProcess]:
        procs = [UpstreamProcess(**options) for _ in range(count)]  # type: ignore[arg-type]
        started.extend(procs)
        for proc in procs:
            await proc.astart()
        return procs

    yield start
    for proc in started:
        proc.kill()
