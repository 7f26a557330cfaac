"""SSRF through the REAL `/call`: the corpus of tests/plane/test_ssrf.py sent to a control plane
served by uvicorn in this test's event loop, with the loop's `sock_connect` patched to record
every outbound connection attempt.

Paths go in the JSON body's `path`; addresses go through `/register`, and also straight into the
registry (as etcd or Consul written by someone else could hold them), so the call-time guards
are proven on their own. Every payload must get a 4xx, and the only connections the process may
attempt are to the plane itself (the test's client) and to the one legitimate upstream, only for
the control calls that prove the recorder sees a real forward.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from meshkit.types import ServiceInstance, ServiceState
from tests.conftest import StartUpstream
from tests.plane.test_ssrf import ADDRESS_PAYLOADS, HEADER_PAYLOADS, PATH_PAYLOADS
from tests.security.conftest import Api, Figures, StartApi
from tests.support.servers import Upstream


@dataclass
class ConnectRecorder:
    """Every `sock_connect` the loop makes, but those to the plane under test."""

    plane_port: int
    attempts: list[Any] = field(default_factory=list)

    def outbound(self, except_port: int | None = None) -> list[Any]:
        return [a for a in self.attempts if a[1] != except_port]


@dataclass
class CallHarness:
    api: Api
    upstream: Upstream
    connects: ConnectRecorder

    async def call(self, **body: Any) -> tuple[int, Any]:
        return await self.api.request("POST", "/call", json={"service_name": "legit", **body})


@pytest.fixture
async def harness(
    start_api: StartApi, upstreams: StartUpstream, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[CallHarness]:
    api = await start_api(health_checks=False)
    upstream = await upstreams("legit")
    code, body = await api.register("legit", upstream.port)
    assert code == 200, body
    recorder = ConnectRecorder(int(api.url.rsplit(":", 1)[1]))
    loop = asyncio.get_running_loop()
    original = loop.sock_connect

    async def recording(sock: socket.socket, address: Any) -> None:
        if address[1] != recorder.plane_port:
            recorder.attempts.append(address)
        await original(sock, address)

    monkeypatch.setattr(loop, "sock_connect", recording)
    yield CallHarness(api, upstream, recorder)


async def test_the_recorder_sees_a_real_forward(harness: CallHarness) -> None:
    code, body = await harness.call(path="/items?q=1")
    assert code == 200 and body["status_code"] == 200, body
    assert [a[1] for a in harness.connects.attempts] == [harness.upstream.port]
    assert harness.upstream.paths == ["/items?q=1"]


async def test_hostile_paths_refused_without_a_connection(harness: CallHarness, figures: Figures) -> None:
    refused = []
    for path in PATH_PAYLOADS:
        code, body = await harness.call(path=path)
        assert 400 <= code < 500, (path, code, body)
        refused.append(code)
    assert harness.connects.attempts == [] and harness.upstream.hits == 0
    figures(
        "security/ssrf_call_paths",
        {"payloads": len(PATH_PAYLOADS), "refused": len(refused), "outbound_connects": 0,
         "by_status": {c: refused.count(c) for c in sorted(set(refused))}},
    )  # fmt: skip


async def test_hostile_headers_refused_without_a_connection(harness: CallHarness) -> None:
    for headers in HEADER_PAYLOADS:
        code, body = await harness.call(path="/", headers=headers)
        assert code == 400 and body["detail"].startswith("headers:"), (headers, code, body)
    assert harness.connects.attempts == [] and harness.upstream.hits == 0


async def test_hostile_addresses_refused_at_register_and_at_call(
    harness: CallHarness, figures: Figures
) -> None:
    """Through /register, then planted in the registry directly: /call must refuse both ways."""
    registry = harness.api.plane.mesh.backend
    planted: list[int] = []
    for i, address in enumerate(ADDRESS_PAYLOADS):
        name = f"evil-{i}"
        code, body = await harness.api.request(
            "POST",
            "/register",
            json={"service_name": name, "address": address, "port": harness.upstream.port},
        )
        assert 400 <= code < 500, (address, code, body)
        try:  # past the registry's own address policy, as a registry written by others could be
            instance = ServiceInstance(
                f"{name}-1", name, address, harness.upstream.port, state=ServiceState.HEALTHY
            )
            await registry.register(instance, address_policy=lambda _: None)
        except ValueError:
            continue  # not even storable (empty, spaces...): nothing to call
        planted.append(i)
    assert len(planted) >= 30  # every IP spelling is storable; malformed names are not
    await asyncio.sleep(0.3)  # the plane follows its registry
    statuses = []
    for i in planted:
        address = ADDRESS_PAYLOADS[i]
        code, body = await harness.api.request(
            "POST", "/call", json={"service_name": f"evil-{i}", "path": "/", "retry_count": 0}
        )
        assert 400 <= code < 500, (address, code, body)
        statuses.append(code)
    assert harness.connects.attempts == [] and harness.upstream.hits == 0
    figures(
        "security/ssrf_call_addresses",
        {"payloads": len(ADDRESS_PAYLOADS), "planted_in_registry": len(planted), "refused_at_call": len(statuses),
         "outbound_connects": 0, "by_status": {c: statuses.count(c) for c in sorted(set(statuses))}},
    )  # fmt: skip
