"""Shared fixtures: real upstream servers on 127.0.0.1 that stop after each test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from tests.support.servers import Handler, Upstream, start_upstream

StartUpstream = Callable[..., Awaitable[Upstream]]


@pytest.fixture
async def upstreams() -> AsyncIterator[StartUpstream]:
    started: list[Upstream] = []

    async def start(name: str = "up", handler: Handler | None = None, port: int = 0) -> Upstream:
        up = await start_upstream(name, handler, port)
        started.append(up)
        return up

    yield start
    for up in started:
        await up.stop()
