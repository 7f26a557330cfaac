"""An etcd that is not there, not etcd, or too old: a clear message naming the address, not a traceback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from meshkit.errors import RegistryUnavailable
from meshkit.registry.etcd import EtcdRegistry
from tests.registry.etcd.cluster import free_ports

Serve = Callable[[web.Application], Awaitable[int]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    runners: list[web.AppRunner] = []

    async def start(app: web.Application) -> int:
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        return int(runner.addresses[0][1])

    yield start
    for runner in runners:
        await runner.cleanup()


async def test_unreachable_etcd_names_every_address() -> None:
    a, b = free_ports(2)
    registry = EtcdRegistry(f"etcd://127.0.0.1:{a},127.0.0.1:{b}", timeout=1.0)
    with pytest.raises(RegistryUnavailable, match=rf"^etcd at 127.0.0.1:{a},127.0.0.1:{b} unreachable: "):
        await registry.start()


def version_app(body: dict[str, str] | None) -> web.Application:
    async def version(request: web.Request) -> web.Response:
        return web.json_response(body) if body is not None else web.Response(status=404, text="nope")

    app = web.Application()
    app.router.add_get("/version", version)
    return app


async def test_old_etcd_is_refused_with_its_version(serve: Serve) -> None:
    port = await serve(version_app({"etcdserver": "3.3.27", "etcdcluster": "3.3.0"}))
    with pytest.raises(RegistryUnavailable, match=rf"^etcd at 127.0.0.1:{port} is version 3.3.27; .*>= 3.4"):
        await EtcdRegistry(f"127.0.0.1:{port}").start()


async def test_something_that_is_not_etcd_is_named(serve: Serve) -> None:
    port = await serve(version_app(None))
    with pytest.raises(RegistryUnavailable, match=rf"^etcd at 127.0.0.1:{port}: does not look like etcd"):
        await EtcdRegistry(f"127.0.0.1:{port}").start()


def test_bad_arguments_name_the_field() -> None:
    with pytest.raises(ValueError, match=r"^timeout:"):
        EtcdRegistry("h:1", timeout=0)
    with pytest.raises(ValueError, match=r"^prefix:"):
        EtcdRegistry("h:1", prefix="meshkit")
    with pytest.raises(ValueError, match=r"^deregister_critical_after:"):
        EtcdRegistry("h:1", deregister_critical_after=-1)
    with pytest.raises(ValueError, match=r"^registry:"):
        EtcdRegistry.from_url("http://h:1")
