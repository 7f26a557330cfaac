"""Fixtures for the security tests: a real plane (a `meshkit serve` process, or in this process when
a test must patch its sockets), a sidecar proxy process, raw-socket HTTP, and figures.

Everything listens on 127.0.0.1; every load loop is bounded and stops by itself. Figures go
through `tests.chaos.support.report` (printed, attached to the report, appended to
test-artifacts/chaos-figures.jsonl) so one file holds every reliability figure.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.chaos.support import percentile, report
from tests.plane.api.conftest import ADMIN, Api, StartApi, api, start_api
from tests.support.plane import API, PlaneProcess, start_plane
from tests.support.servers import free_port

__all__ = ["ADMIN", "API", "Api", "StartApi", "api", "percentile", "report", "start_api"]

Figures = Callable[[str, dict[str, Any]], None]


@pytest.fixture
def figures(record_property: Callable[[str, object], None]) -> Figures:
    """`figures("security/name", {...})`: print, record and append one line of figures."""

    def emit(name: str, values: dict[str, Any]) -> None:
        report(name, values, record_property)

    return emit


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlaneProcess]:
    """`meshkit serve` (uvloop, httptools) as its own process, as in production."""
    proc = start_plane(tmp_path_factory.mktemp("plane") / "data")
    yield proc
    proc.stop()


async def register(
    session: aiohttp.ClientSession, plane: PlaneProcess, name: str, port: int, address: str = "127.0.0.1"
) -> str:
    body = {"service_name": name, "address": address, "port": port}
    headers = {"Authorization": f"Bearer {plane.token}"}
    async with session.post(f"{plane.url}{API}/register", json=body, headers=headers) as resp:
        answer = await resp.json()
        assert resp.status == 200, answer
        return str(answer["service_id"])


@dataclass
class ProxyProcess:
    """`meshkit proxy` as its own process, so a crash is a dead process, not a failed await."""

    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


def start_proxy(plane: PlaneProcess, log_dir: Path, timeout: float = 20.0) -> ProxyProcess:
    port = free_port()
    log = log_dir / f"proxy-{port}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHKIT_")}
    command = [
        sys.executable,
        "-m",
        "meshkit.cli",
        "--url",
        plane.url,
        "--token",
        plane.token,
        "proxy",
        "--listen",
        f"127.0.0.1:{port}",
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    proxy = ProxyProcess(port, proc, log)
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        if proc.poll() is not None:
            raise RuntimeError(f"meshkit proxy exited with {proc.returncode}:\n{proxy.output()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return proxy
        time.sleep(0.05)
    proxy.stop()
    raise RuntimeError(f"meshkit proxy did not listen within {timeout}s:\n{proxy.output()}")


@pytest.fixture(scope="module")
def proxy(plane: PlaneProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    proc = start_proxy(plane, tmp_path_factory.mktemp("proxy"))
    yield proc
    proc.stop()


async def exchange(port: int, data: bytes, *, wait: float = 5.0) -> bytes:
    """Send raw bytes to 127.0.0.1:`port` and read until the server closes or `wait` seconds pass."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    chunks: list[bytes] = []
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(wait):
            while chunk := await reader.read(65536):
                chunks.append(chunk)
    except (TimeoutError, ConnectionError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return b"".join(chunks)


def status_of(answer: bytes) -> int | None:
    """The status code of the first response in `answer`, or None when there is none."""
    line = answer.split(b"\r\n", 1)[0].split(b" ")
    if len(line) >= 2 and line[0].startswith(b"HTTP/1.") and line[1].isdigit():
        return int(line[1])
    return None


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
