"""The /call transport (`meshkit.plane.calls.guarded_transport`): H1Transport with the SSRF
connect guard and the response cap.

The guard must judge the IP actually dialled: a literal metadata address, and a name that
resolves (here: a patched resolver, as a rebinding DNS server would answer) to one, are
refused before any `sock_connect`; the refusal is recognised as an SSRF refusal (403 at the
API), while a name resolving to loopback still reaches the upstream.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web

from meshkit.errors import ConnectError, ConnectionReset
from meshkit.plane.calls import guarded_transport, refuse_unsafe_ip, safe_result, text
from meshkit.plane.ssrf import UnsafeConnect, is_unsafe_connect
from meshkit.types import Request, ServiceInstance
from tests.conftest import StartUpstream
from tests.plane.api.conftest import Api, StartApi
from tests.transport.scripted import answer_each, scripted

Resolver = Callable[..., Any]


def rebinding(table: dict[str, str], original: Resolver) -> Resolver:
    """A `loop.getaddrinfo` that answers the names in `table` with the given IPs."""

    async def resolve(host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        if host in table:
            ip = table[host]
            family = socket.AF_INET6 if ":" in ip else socket.AF_INET
            return [(family, socket.SOCK_STREAM, 6, "", (ip, port))]
        return await original(host, port, *args, **kwargs)

    return resolve


@pytest.fixture
async def connects(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every address the running loop dials (patched `sock_connect`)."""
    seen: list[Any] = []
    loop = asyncio.get_running_loop()
    original = loop.sock_connect

    async def recording(sock: socket.socket, address: Any) -> None:
        seen.append(address)
        await original(sock, address)

    monkeypatch.setattr(loop, "sock_connect", recording)
    return seen


@pytest.mark.parametrize(
    "ip", ["169.254.169.254", "fd00:ec2::254", "::ffff:169.254.169.254", "0.0.0.0", "fe80::1%eth0", "x"]
)
def test_the_guard_refuses_unsafe_ips(ip: str) -> None:
    with pytest.raises(UnsafeConnect):
        refuse_unsafe_ip(ip, 80)


@pytest.mark.parametrize("ip", ["127.0.0.1", "10.1.2.3", "192.168.0.7", "::1", "8.8.8.8"])
def test_the_guard_lets_ordinary_ips_through(ip: str) -> None:
    refuse_unsafe_ip(ip, 80)


async def test_metadata_literal_refused_before_any_connect(connects: list[Any]) -> None:
    transport = guarded_transport()
    try:
        instance = ServiceInstance("m-1", "m", "169.254.169.254", 80)
        with pytest.raises(ConnectError) as caught:
            await transport(Request("GET", "/", instance=instance))
    finally:
        await transport.aclose()
    assert is_unsafe_connect(caught.value)
    assert connects == []


async def test_dns_rebinding_to_metadata_refused_at_connect_time(
    connects: list[Any], monkeypatch: pytest.MonkeyPatch, upstreams: StartUpstream
) -> None:
    up = await upstreams("u")
    loop = asyncio.get_running_loop()
    table = {
        "rebind.test": "169.254.169.254",
        "mapped.test": "::ffff:169.254.169.254",
        "svc.test": "127.0.0.1",
    }
    monkeypatch.setattr(loop, "getaddrinfo", rebinding(table, loop.getaddrinfo))
    transport = guarded_transport()
    try:
        for name in ("rebind.test", "mapped.test"):
            with pytest.raises(ConnectError) as caught:
                await transport(Request("GET", "/", instance=ServiceInstance("r-1", "r", name, up.port)))
            assert is_unsafe_connect(caught.value), name
        assert connects == [] and up.hits == 0
        ok = await transport(Request("GET", "/", instance=ServiceInstance("s-1", "s", "svc.test", up.port)))
    finally:
        await transport.aclose()
    assert ok.status == 200 and up.hits == 1
    assert [a[0] for a in connects] == ["127.0.0.1"]


async def test_response_over_the_cap_is_refused(upstreams: StartUpstream) -> None:
    async def big(request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"x" * 5000)

    up = await upstreams("big", big)
    transport = guarded_transport(max_response_bytes=4096)
    try:
        instance = ServiceInstance("b-1", "big", "127.0.0.1", up.port)
        with pytest.raises(ConnectionReset):
            await transport(Request("GET", "/", instance=instance))
        small = guarded_transport(max_response_bytes=5000)
        try:
            got = await small(Request("GET", "/", instance=instance))
        finally:
            await small.aclose()
    finally:
        await transport.aclose()
    assert got.status == 200 and len(got.body) == 5000


async def test_call_to_a_name_rebinding_to_metadata_is_403(
    start_api: StartApi, upstreams: StartUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Registered under a plain name (which passes registration), then resolving to metadata."""
    up = await upstreams("legit")
    api = await start_api(health_checks=False)
    loop = asyncio.get_running_loop()
    monkeypatch.setattr(loop, "getaddrinfo", rebinding({"rebind.test": "169.254.169.254"}, loop.getaddrinfo))
    code, body = await api.request(
        "POST", "/register", json={"service_name": "rb", "address": "rebind.test", "port": up.port}
    )
    assert code == 200, body
    code, body = await api.request("POST", "/call", json={"service_name": "rb", "retry_count": 0})
    assert code == 403 and "refused" in body["detail"], body
    assert up.hits == 0


async def test_answer_header_bytes_that_are_not_utf8_come_back_replaced_in_the_json(api: Api) -> None:
    reply = b"HTTP/1.1 200 OK\r\nX-Raw: caf\xe9\r\nX-Utf8: caf\xc3\xa9\r\nContent-Length: 2\r\n\r\nok"
    async with scripted(answer_each(reply)) as upstream:
        await api.register("raw", upstream.port)
        code, result = await api.request("POST", "/call", json={"service_name": "raw"})
    assert code == 200 and result["status_code"] == 200, result
    headers = {k.lower(): v for k, v in result["headers"].items()}
    assert (headers["x-raw"], headers["x-utf8"]) == ("caf\ufffd", "café")


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"A": "1", "B": "café"},
        {"A": "caf\udce9"},  # a value the transport decoded with surrogateescape
        {"X-\udcff": "v", "B": "ok"},  # a name
        {"A": "\ud83d", "B": "\ude00"},  # two halves of a pair, apart: each stays a lone surrogate
        {"A": "ok", "B": "x\udc80y", "C": "\udcff"},
    ],
)
def test_safe_result_makes_every_name_and_value_json_safe_as_text_does(headers: dict[str, str]) -> None:
    result = safe_result({"headers": dict(headers), "body": "b\udce9"})
    assert result["headers"] == {text(k): text(v) for k, v in headers.items()}
    assert result["body"] == "b\ufffd"
    for name, value in result["headers"].items():
        (name + value).encode("utf-8")  # what orjson will write
