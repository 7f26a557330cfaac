"""Fixtures for the chaos tests: upstream processes that are always killed after the test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from tests.chaos.support import UpstreamProcess

StartProcesses = Callable[..., Awaitable[list[UpstreamProcess]]]


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
