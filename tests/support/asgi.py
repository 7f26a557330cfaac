"""A real uvicorn server for an ASGI app on a free 127.0.0.1 port, run as a task of the test's loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import uvicorn

from tests.support.servers import free_port


async def start_uvicorn(
    app: Any, *, lifespan: Literal["on", "off"] = "off"
) -> tuple[uvicorn.Server, asyncio.Task[None], int]:
    """Start serving `app`; returns once uvicorn listens (or raises what stopped it)."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan=lifespan)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    return server, task, port


async def stop_uvicorn(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    server.should_exit = True
    await task


@asynccontextmanager
async def uvicorn_server(app: Any, *, lifespan: Literal["on", "off"] = "off") -> AsyncIterator[int]:
    """Serve `app` for the duration of the block; yields the port."""
    server, task, port = await start_uvicorn(app, lifespan=lifespan)
    try:
        yield port
    finally:
        await stop_uvicorn(server, task)
