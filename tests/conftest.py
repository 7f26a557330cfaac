"""Shared fixtures: real upstream servers on 127.0.0.1 that stop after each test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from meshkit.native import edited_since_build
from tests.support.servers import Handler, Upstream, start_upstream

StartUpstream = Callable[..., Awaitable[Upstream]]


def pytest_sessionstart(session: pytest.Session) -> None:
    """Refuse to test old compiled code: Python imports a module's extension even when its .py changed."""
    edited = edited_since_build()
    if edited:
        names = ", ".join(str(p.name) for p in edited[:5])
        pytest.exit(
            f"meshkit's compiled modules are older than {names}: run `make native` first", returncode=4
        )


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
