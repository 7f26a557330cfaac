"""A scripted raw HTTP/1.1 server on 127.0.0.1: it answers with exactly the bytes a test gives.

aiohttp's server never sends a malformed response or drops a keep-alive connection at a
chosen moment; these tests need both. Each connection runs `script(conn, reader, writer)`
and the server counts connections and the requests it read.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

Script = Callable[["Conn", asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class Conn:
    number: int  # 0 for the first connection the server accepted
    requests: list[bytes] = field(default_factory=list)


@dataclass
class Scripted:
    port: int
    conns: list[Conn] = field(default_factory=list)
    closed: int = 0  # connections that ended (by either side)
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_ended(self, count: int) -> None:
        """Wait until `count` connections have ended."""
        while self.closed < count:
            self.ended.clear()
            await self.ended.wait()

    @property
    def requests(self) -> list[bytes]:
        return [r for c in self.conns for r in c.requests]


async def read_request(reader: asyncio.StreamReader, conn: Conn) -> bytes | None:
    """One request's head and Content-Length body, recorded on `conn`; None at EOF."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    body = await reader.readexactly(length) if length else b""
    conn.requests.append(head + body)
    return head + body


def answer_each(*replies: bytes, then_close: bool = False) -> Script:
    """Answer the n-th request on every connection with `replies[n]`; past the end, close."""

    async def script(conn: Conn, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for reply in replies:
            if await read_request(reader, conn) is None:
                return
            writer.write(reply)
            await writer.drain()
        if not then_close:
            await read_request(reader, conn)

    return script


@contextlib.asynccontextmanager
async def scripted(script: Script) -> AsyncIterator[Scripted]:
    state = Scripted(0)
    running: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        running.add(task)
        conn = Conn(len(state.conns))
        state.conns.append(conn)
        try:
            await script(conn, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            state.closed += 1
            state.ended.set()
            writer.close()
            running.discard(task)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    state.port = int(server.sockets[0].getsockname()[1])
    try:
        yield state
    finally:
        server.close()
        for task in list(running):
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
