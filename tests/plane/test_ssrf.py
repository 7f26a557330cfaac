"""SSRF: a corpus of hostile paths, addresses and headers, each refused with a 4xx and no
outbound connection; safe calls still reach a real server on 127.0.0.1.

The harness is a small real forwarding endpoint built from the pieces `/call` uses:
`SsrfGuardLayer` over an `AiohttpTransport` with a `GuardedConnector`. Outbound connections
are counted twice: accepts on the upstream socket, and every `sock_connect` on the loop.
"""

from __future__ import annotations

import asyncio
import functools
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from meshkit.errors import ConnectError
from meshkit.plane.headers import UnsafeHeader, forwardable_headers, strip_hop_by_hop
from meshkit.plane.ssrf import (
    MAX_PATH_LENGTH,
    BodyTooLarge,
    GuardedConnector,
    SsrfGuardLayer,
    UnsafeAddress,
    UnsafePath,
    check_address,
    is_unsafe_connect,
    normalize_path,
    parse_inet_aton,
)
from meshkit.transport.aiohttp import AiohttpTransport
from meshkit.types import Request, ServiceInstance

MESH_TOKEN = "mesh-control-plane-token-0123456789"

PATH_PAYLOADS = [
    "http://169.254.169.254/latest/meta-data/",
    "https://evil.example/",
    "HTTP://evil.example/",
    "//evil.example/x",
    "///evil.example",
    "/\\evil.example",
    "\\\\evil.example\\x",
    "evil.example/x",
    "@evil.example/x",
    "/@evil.example",
    "/x@169.254.169.254/",
    "/a//b",
    "/../etc/passwd",
    "/a/../../etc/passwd",
    "/a/./b",
    "/a/..",
    "/%2e%2e/etc/passwd",
    "/%2E%2E/etc/passwd",
    "/.%2e/admin",
    "/%2e./admin",
    "/..;/admin",
    "/a/%2e%2e;x=1/b",
    "/a%2fb",
    "/a%2Fb",
    "/%2f%2fevil.example",
    "/a%5cb",
    "/a%5C..%5Cb",
    "/a%252fb",
    "/a%252e%252e/b",
    "/a%25252fb",
    "/%c0%ae%c0%ae/etc/passwd",
    "/%c0%af",
    "/%e0%80%ae",
    "/%ef%bc%8f%ef%bc%8fevil.example",
    "/%ef%bc%8e%ef%bc%8e/x",
    "/\uff0e\uff0e/x",
    "/a\r\nHost: evil.example",
    "/a\nX-Injected: 1",
    "/a\rb",
    "/a%0d%0aSet-Cookie:%20x=1",
    "/a%0aX: y",
    "/a%0AX:y",
    "/a\x00b",
    "/a%00.json",
    "/a\tb",
    "/a b",
    "/a\x7f",
    "/x#@evil.example",
    "/x#frag",
    "/q?next=%0d%0aHost:evil",
    "/q?x=%00",
    "/a%zz",
    "/a%",
    "/a%2",
    "",
    "/" + "a" * (MAX_PATH_LENGTH + 1),
    "/" + "a" * 50_000,
]

ADDRESS_PAYLOADS = [
    "169.254.169.254",
    "169.254.170.2",
    "169.254.0.1",
    "169.254.255.255",
    "2852039166",
    "0xa9fea9fe",
    "0xA9FEA9FE",
    "0251.0376.0251.0376",
    "0xa9.0xfe.0xa9.0xfe",
    "169.254.43518",
    "169.16689662",
    "0251.254.169.254",
    "fd00:ec2::254",
    "[fd00:ec2::254]",
    "::ffff:169.254.169.254",
    "::ffff:a9fe:a9fe",
    "64:ff9b::a9fe:a9fe",
    "2002:a9fe:a9fe::1",
    "fe80::1",
    "fe80::1%eth0",
    "100.100.100.200",
    "168.63.129.16",
    "192.0.0.192",
    "0.0.0.0",
    "0",
    "::",
    "224.0.0.1",
    "ff02::1",
    "255.255.255.255",
    "240.0.0.1",
    "metadata.google.internal",
    "METADATA.GOOGLE.INTERNAL",
    "instance-data",
    "evil.example/",
    "evil.example:80",
    "user@evil.example",
    "evil example",
    "a..b",
    "-evil.example",
    "evil.example.",
    "x." * 130 + "com",
    "",
]

HEADER_PAYLOADS: list[dict[str, str]] = [
    {"X-A": "v\r\nHost: 169.254.169.254"},
    {"X-A": "v\nX-B: w"},
    {"X-A": "v\x00"},
    {"Bad Name": "v"},
    {"X-A\r\nHost": "v"},
    {"": "v"},
]


@dataclass
class CountingUpstream:
    """A raw TCP server on 127.0.0.1 that counts accepted connections and answers HTTP."""

    status_line: str = "200 OK"
    extra: str = ""
    accepts: int = 0
    requests: list[bytes] = field(default_factory=list)
    port: int = 0
    server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepts += 1
        head = await reader.readuntil(b"\r\n\r\n")
        self.requests.append(head)
        body = b"upstream"
        writer.write(
            f"HTTP/1.1 {self.status_line}\r\nContent-Length: {len(body)}\r\n{self.extra}"
            f"Connection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        writer.close()

    async def start(self) -> CountingUpstream:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self


class StaticResolver(AbstractResolver):
    """Answers from a table, as a rebinding DNS server would."""

    def __init__(self, table: dict[str, str]) -> None:
        self.table = table

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        ip = self.table[host]
        fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
        return [{"hostname": host, "host": ip, "port": port, "family": fam, "proto": 0, "flags": 0}]

    async def close(self) -> None:
        return None


@dataclass
class Harness:
    url: str
    upstream: CountingUpstream
    connects: list[Any]
    session: aiohttp.ClientSession

    async def call(self, **body: Any) -> tuple[int, dict[str, Any]]:
        async with self.session.post(f"{self.url}/call", json=body) as resp:
            return resp.status, await resp.json()

    @property
    def outbound(self) -> int:
        """Connections made towards anything but the harness itself."""
        return len(self.connects)


def forwarding_app(transport: AiohttpTransport) -> web.Application:
    """What `/call` does, reduced to the SSRF-relevant steps."""
    service = SsrfGuardLayer(transport, max_body_bytes=64)

    async def call(request: web.Request) -> web.Response:
        spec = await request.json()
        try:
            instance = ServiceInstance("svc-1", "svc", spec.get("address", "127.0.0.1"), spec["port"])
            headers = forwardable_headers(spec.get("headers", {}), mesh_token=MESH_TOKEN)
            body = spec["body"].encode() if spec.get("body") is not None else None
            req = Request("GET", spec.get("path", "/"), headers, body, service="svc", instance=instance)
            resp = await service(req)
        except BodyTooLarge as exc:
            return web.json_response({"detail": str(exc)}, status=413)
        except (UnsafePath, UnsafeAddress, UnsafeHeader, ValueError) as exc:
            return web.json_response({"detail": str(exc)}, status=400)
        except ConnectError as exc:
            status = 403 if is_unsafe_connect(exc) else 503
            return web.json_response({"detail": str(exc)}, status=status)
        headers_out = {k: v for k, v in resp.headers.items() if k.lower() == "location"}
        return web.json_response({"status_code": resp.status, "headers": headers_out, "body": resp.text()})

    app = web.Application()
    app.router.add_post("/call", call)
    return app


@pytest.fixture
async def harness(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Callable[..., Any]]:
    cleanups: list[Callable[[], Any]] = []

    async def start(
        resolver: AbstractResolver | None = None, status_line: str = "200 OK", extra: str = ""
    ) -> Harness:
        upstream = await CountingUpstream(status_line, extra).start()
        factory = functools.partial(GuardedConnector, resolver=resolver) if resolver else GuardedConnector
        transport = AiohttpTransport(connector_factory=factory, max_response_bytes=1024)  # type: ignore[arg-type]
        runner = web.AppRunner(forwarding_app(transport), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        session = aiohttp.ClientSession()
        loop = asyncio.get_running_loop()
        connects: list[Any] = []
        original = loop.sock_connect

        async def counting_connect(sock: socket.socket, address: Any) -> None:
            if address[1] != port:  # the test's own client talking to the harness is not outbound
                connects.append(address)
            await original(sock, address)

        monkeypatch.setattr(loop, "sock_connect", counting_connect)

        async def stop() -> None:
            await session.close()
            await transport.aclose()
            await runner.cleanup()
            assert upstream.server is not None
            upstream.server.close()

        cleanups.append(stop)
        return Harness(f"http://127.0.0.1:{port}", upstream, connects, session)

    yield start
    for stop in cleanups:
        await stop()


def test_corpus_is_large_enough() -> None:
    assert len(PATH_PAYLOADS) + len(ADDRESS_PAYLOADS) + len(HEADER_PAYLOADS) >= 50
    assert len(set(PATH_PAYLOADS)) == len(PATH_PAYLOADS)
    assert len(set(ADDRESS_PAYLOADS)) == len(ADDRESS_PAYLOADS)


async def test_safe_call_reaches_the_upstream(harness: Callable[..., Any]) -> None:
    h = await harness()
    status, body = await h.call(port=h.upstream.port, path="/api/v1/items?limit=10&q=a%20b")
    assert status == 200 and body["status_code"] == 200 and body["body"] == "upstream"
    assert h.upstream.accepts == 1 and h.outbound == 1  # the counters do see a real connection
    assert h.upstream.requests[0].startswith(b"GET /api/v1/items?limit=10&q=a%20b HTTP/1.1")


@pytest.mark.parametrize("path", PATH_PAYLOADS)
async def test_hostile_paths_are_refused_without_connecting(harness: Callable[..., Any], path: str) -> None:
    h = await harness()
    status, body = await h.call(port=h.upstream.port, path=path)
    assert 400 <= status < 500, body
    assert body["detail"].startswith("path:")
    assert h.upstream.accepts == 0 and h.outbound == 0


@pytest.mark.parametrize("address", ADDRESS_PAYLOADS)
async def test_hostile_addresses_are_refused_without_connecting(
    harness: Callable[..., Any], address: str
) -> None:
    with pytest.raises(UnsafeAddress, match=r"^address:"):
        check_address(address)  # at registration
    h = await harness()
    status, body = await h.call(address=address or "x", port=h.upstream.port, path="/")
    if address == "":
        return  # an empty address never gets this far: ServiceInstance refuses it
    assert 400 <= status < 500, body
    assert h.upstream.accepts == 0 and h.outbound == 0


@pytest.mark.parametrize("headers", HEADER_PAYLOADS)
async def test_hostile_headers_are_refused_without_connecting(
    harness: Callable[..., Any], headers: dict[str, str]
) -> None:
    h = await harness()
    status, body = await h.call(port=h.upstream.port, path="/", headers=headers)
    assert status == 400 and body["detail"].startswith("headers:")
    assert h.outbound == 0


async def test_oversized_body_is_refused_without_connecting(harness: Callable[..., Any]) -> None:
    h = await harness()
    status, body = await h.call(port=h.upstream.port, path="/", body="x" * 65)
    assert status == 413 and body["detail"].startswith("body:")
    assert h.outbound == 0


async def test_dns_rebinding_to_metadata_is_refused_at_connect_time(harness: Callable[..., Any]) -> None:
    resolver = StaticResolver({"rebind.test": "169.254.169.254", "mapped.test": "::ffff:169.254.169.254"})
    h = await harness(resolver=resolver)
    check_address("rebind.test")  # a plain name passes registration...
    for name in ("rebind.test", "mapped.test"):
        status, body = await h.call(address=name, port=h.upstream.port, path="/")
        assert status == 403, body  # ...but what it resolves to is refused before connect()
        assert "169.254.169.254" in body["detail"]
    assert h.outbound == 0


async def test_name_resolving_to_loopback_is_allowed(harness: Callable[..., Any]) -> None:
    h = await harness(resolver=StaticResolver({"svc.internal": "127.0.0.1"}))
    status, body = await h.call(address="svc.internal", port=h.upstream.port, path="/ok")
    assert status == 200 and body["body"] == "upstream"
    assert h.upstream.accepts == 1


async def test_redirects_are_returned_not_followed(harness: Callable[..., Any]) -> None:
    h = await harness(status_line="302 Found", extra="Location: http://169.254.169.254/latest/\r\n")
    status, body = await h.call(port=h.upstream.port, path="/go")
    assert status == 200 and body["status_code"] == 302
    assert body["headers"]["Location"] == "http://169.254.169.254/latest/"
    assert h.upstream.accepts == 1 and h.outbound == 1


async def test_transport_alone_refuses_metadata_literal_at_connect_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Even a stack without the guard layer cannot dial 169.254.169.254 through GuardedConnector."""
    loop = asyncio.get_running_loop()
    connects: list[Any] = []
    original = loop.sock_connect

    async def counting(sock: socket.socket, address: Any) -> None:
        connects.append(address)
        await original(sock, address)

    monkeypatch.setattr(loop, "sock_connect", counting)
    transport = AiohttpTransport(connector_factory=GuardedConnector, connect_timeout=1.0)
    try:
        for address in ("169.254.169.254", "::ffff:169.254.169.254", "fe80::1", "100.100.100.200"):
            instance = ServiceInstance("x-1", "x", address, 80)
            with pytest.raises(ConnectError) as info:
                await transport(Request("GET", "/", instance=instance))
            assert is_unsafe_connect(info.value)
    finally:
        await transport.aclose()
    assert connects == []


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/users/42",
        "/files/report.v2.pdf",
        "/a;b=c/d",
        "/search?q=..%2F&x=//y",
        "/100%25",
        "/~u/%E2%82%AC",
    ],
)
def test_ordinary_paths_pass(path: str) -> None:
    assert normalize_path(path) == path


def test_normalisation_canonicalises_escapes_once() -> None:
    assert normalize_path("/%7euser/%2a?q=%7e") == "/~user/%2A?q=~"
    assert normalize_path(normalize_path("/%7euser/%2a")) == "/~user/%2A"


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.1.2.3", "172.16.0.9", "192.168.1.1", "::1", "[::1]", "fd12::1", "localhost", "orders"],
)
def test_loopback_private_and_plain_names_stay_allowed(address: str) -> None:
    check_address(address)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2852039166", "169.254.169.254"),
        ("0xa9fea9fe", "169.254.169.254"),
        ("0251.0376.0251.0376", "169.254.169.254"),
        ("169.254.43518", "169.254.169.254"),
        ("169.16689662", "169.254.169.254"),
        ("127.1", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("1.2.3.4", "1.2.3.4"),
        ("256.1.1.1", None),
        ("1.2.3.4.5", None),
        ("08.1.1.1", None),
        ("svc.local", None),
    ],
)
def test_inet_aton_parsing(text: str, expected: str | None) -> None:
    parsed = parse_inet_aton(text)
    assert (str(parsed) if parsed else None) == expected


def test_non_canonical_spelling_of_a_safe_ip_is_refused_with_the_canonical_form() -> None:
    with pytest.raises(UnsafeAddress, match=r"non-canonical spelling of 127\.0\.0\.1"):
        check_address("2130706433")


def test_hop_by_hop_and_connection_listed_headers_are_stripped() -> None:
    kept = strip_hop_by_hop(
        {
            "Connection": "keep-alive, X-Secret-Hop",
            "X-Secret-Hop": "1",
            "Keep-Alive": "timeout=5",
            "Transfer-Encoding": "chunked",
            "Upgrade": "websocket",
            "Proxy-Authorization": "Basic x",
            "TE": "trailers",
            "Trailer": "X",
            "Host": "evil.example",
            "Content-Length": "5",
            "X-Request-Id": "abc",
            "Authorization": "Bearer upstream-own-token",
        }
    )
    assert dict(kept) == {"X-Request-Id": "abc", "Authorization": "Bearer upstream-own-token"}


def test_control_plane_token_and_internal_headers_are_never_forwarded() -> None:
    kept = forwardable_headers(
        {"Authorization": f"Bearer {MESH_TOKEN}", "X-Meshkit-Deadline-Ms": "1", "X-Ok": "1"},
        mesh_token=MESH_TOKEN,
    )
    assert dict(kept) == {"X-Ok": "1"}


def test_too_many_headers_are_refused() -> None:
    with pytest.raises(UnsafeHeader, match=r"^headers: at most"):
        forwardable_headers({f"X-{i}": "v" for i in range(101)})


async def test_guard_layer_remembers_only_addresses_that_passed() -> None:
    from meshkit.plane.ssrf import layer as guard_module
    from meshkit.transport.mock import MockTransport
    from meshkit.types import Response

    sent: list[str] = []
    transport = MockTransport(lambda r: sent.append(r.instance.address) or Response(200))  # type: ignore[union-attr]
    guard = SsrfGuardLayer(transport)
    bad = ServiceInstance("m-1", "m", "169.254.169.254", 80)
    good = ServiceInstance("g-1", "g", "127.0.0.1", 80)
    for _ in range(3):  # refused every time: a refusal is never remembered as safe
        with pytest.raises(UnsafeAddress):
            await guard(Request("GET", "/", service="m", instance=bad))
    for _ in range(3):
        assert (await guard(Request("GET", "/", service="g", instance=good))).status == 200
    assert sent == ["127.0.0.1"] * 3
    for n in range(guard_module.MAX_REMEMBERED + 1):  # a full set starts again, still correct
        await guard(
            Request(
                "GET",
                "/",
                service="g",
                instance=ServiceInstance(f"g-{n}", "g", f"10.0.{n // 250}.{n % 250 + 1}", 80),
            )
        )
    with pytest.raises(UnsafeAddress):
        await guard(Request("GET", "/", service="m", instance=bad))
