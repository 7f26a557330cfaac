"""A real control plane for API tests: `ControlPlane` + `create_app` on uvicorn on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import uvicorn

from meshkit.plane.api import V2_PREFIX, create_app
from meshkit.plane.plane import ControlPlane
from tests.support.asgi import start_uvicorn

ADMIN = "admin-token-for-tests-0123456789"


@dataclass
class Api:
    url: str
    plane: ControlPlane
    session: aiohttp.ClientSession
    server: uvicorn.Server
    task: asyncio.Task[None]
    admin: str = ADMIN
    tokens: dict[str, str] = field(default_factory=dict)

    async def request(
        self, method: str, path: str, *, token: str | None = ADMIN, **kwargs: Any
    ) -> tuple[int, Any]:
        """`path` is relative to the v2 prefix unless it starts with '//' (then from the root)."""
        url = self.url + (path[1:] if path.startswith("//") else V2_PREFIX + path)
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        async with self.session.request(method, url, headers=headers, **kwargs) as resp:
            raw = await resp.read()
            ctype = resp.headers.get("Content-Type", "")
            return resp.status, (await resp.json() if "json" in ctype and raw else raw.decode("latin-1"))

    async def register(
        self, name: str, port: int, *, token: str | None = ADMIN, **extra: Any
    ) -> tuple[int, Any]:
        body = {"service_name": name, "address": "127.0.0.1", "port": port, **extra}
        return await self.request("POST", "/register", token=token, json=body)

    async def service_token(self, name: str, services: list[str]) -> str:
        status, body = await self.request("POST", "/tokens", json={"name": name, "services": services})
        assert status == 200, body
        return str(body["token"])

    async def stop(self) -> None:
        self.server.should_exit = True
        await self.task
        await self.session.close()


StartApi = Callable[..., Awaitable[Api]]


@pytest.fixture
async def start_api(tmp_path: Path) -> AsyncIterator[StartApi]:
    started: list[Api] = []

    async def start(**options: Any) -> Api:
        options.setdefault("data_dir", tmp_path / "data")
        options.setdefault("admin_token", ADMIN)
        plane = ControlPlane(**options)
        server, task, port = await start_uvicorn(create_app(plane), lifespan="on")
        api = Api(f"http://127.0.0.1:{port}", plane, aiohttp.ClientSession(), server, task)
        started.append(api)
        return api

    yield start
    for api in started:
        if not api.task.done():
            await api.stop()


@pytest.fixture
async def api(start_api: StartApi) -> Api:
    return await start_api()
