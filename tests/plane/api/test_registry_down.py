"""When the registry backend fails: writes answer 503 with a clear message, reads go on from the cache."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from meshkit.errors import RegistryUnavailable
from meshkit.registry.base import AddressPolicy, Snapshot
from meshkit.registry.embedded import EmbeddedRegistry
from meshkit.types import ServiceInstance, ServiceState
from tests.plane.api.conftest import StartApi


class SwitchableRegistry:
    """An embedded registry that can be made unreachable, as a remote one can be."""

    def __init__(self) -> None:
        self.inner = EmbeddedRegistry()
        self.down = False
        self._cut = asyncio.Event()

    def set_down(self, down: bool) -> None:
        """Going down also breaks every open watch, as a lost connection does."""
        self.down = down
        if down:
            self._cut.set()
        else:
            self._cut = asyncio.Event()

    def _check(self) -> None:
        if self.down:
            raise RegistryUnavailable("connection refused (test switch)")

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    async def register(
        self, instance: ServiceInstance, *, address_policy: AddressPolicy | None = None
    ) -> ServiceInstance:
        self._check()
        return await self.inner.register(instance, address_policy=address_policy)

    async def deregister(self, service_id: str) -> bool:
        self._check()
        return await self.inner.deregister(service_id)

    async def heartbeat(self, service_id: str) -> None:
        self._check()
        await self.inner.heartbeat(service_id)

    async def set_state(
        self, service_id: str, state: ServiceState, reason: str = ""
    ) -> ServiceInstance | None:
        self._check()
        return await self.inner.set_state(service_id, state, reason)

    async def get(self, service_id: str) -> ServiceInstance | None:
        self._check()
        return await self.inner.get(service_id)

    async def instances(self, service_name: str) -> Snapshot:
        self._check()
        return await self.inner.instances(service_name)

    async def services(self) -> dict[str, int]:
        self._check()
        return await self.inner.services()

    async def all_instances(self) -> list[ServiceInstance]:
        self._check()
        return await self.inner.all_instances()

    async def watch(self, service_name: str | None = None) -> AsyncIterator[Snapshot]:
        self._check()
        cut = self._cut
        updates = aiter(self.inner.watch(service_name))
        while True:
            nxt = asyncio.ensure_future(anext(updates))
            broken = asyncio.ensure_future(cut.wait())
            done, _ = await asyncio.wait({nxt, broken}, return_when=asyncio.FIRST_COMPLETED)
            if broken in done:
                nxt.cancel()
                raise RegistryUnavailable("connection lost (test switch)")
            broken.cancel()
            yield nxt.result()


async def test_registry_down_writes_503_reads_from_cache(start_api: StartApi, upstreams) -> None:
    up = await upstreams("cached")
    registry = SwitchableRegistry()
    api = await start_api(registry=registry, data_dir=None)
    code, _ = await api.register("svc", up.port)
    assert code == 200
    code, found = await api.request("GET", "/discover/svc")
    assert found["total"] == 1 and found["stale"] is False

    registry.set_down(True)
    await asyncio.sleep(0.05)  # the cache's follower notices
    code, body = await api.register("svc", up.port + 1 if up.port < 65535 else 1)
    assert code == 503 and body["detail"].startswith("registry unavailable:")
    code, body = await api.request("DELETE", f"/deregister/svc-127.0.0.1-{up.port}")
    assert code == 503
    code, found = await api.request("GET", "/discover/svc", params={"use_cache": "false"})
    assert code == 200 and found["total"] == 1 and found["stale"] is True  # served from the cache
    code, result = await api.request("POST", "/call", json={"service_name": "svc"})
    assert code == 200 and result["body"] == "cached"  # the data path goes on
    code, health = await api.request("GET", "/health")
    assert code == 200 and health["consul_connected"] is False
    code, body = await api.request("GET", "/discover/never-cached")
    assert code == 503

    registry.set_down(False)
    code, health = await api.request("GET", "/health")
    assert health["consul_connected"] is True
    code, found = await api.request("GET", "/discover/svc", params={"use_cache": "false"})
    assert found["stale"] is False
