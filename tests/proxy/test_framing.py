"""Request smuggling: ambiguous framing gets a 400 from the sidecar and never reaches an instance.

Each case goes as raw bytes over a socket, so no client library can tidy it first. Most
are refused by aiohttp's parser; HTTP/1.0 with Transfer-Encoding is refused by
`check_framing`, which also holds the rules when aiohttp runs its pure-Python parser.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from meshkit.proxy import SidecarProxy, UnsafeFraming, check_framing
from meshkit.registry.embedded import EmbeddedRegistry
from meshkit.types import ServiceInstance, ServiceState
from tests.conftest import StartUpstream
from tests.support.servers import Upstream

SMUGGLING = {
    "content-length and transfer-encoding": b"POST /up/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "duplicate content-length": b"POST /up/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    "duplicate equal content-length": b"POST /up/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
    "content-length list": b"POST /up/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello",
    "signed content-length": b"POST /up/x HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello",
    "unknown transfer-encoding": b"POST /up/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
    "gzip transfer-encoding": b"POST /up/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n0\r\n\r\n",
    "chunked twice": b"POST /up/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
    "duplicate transfer-encoding": b"POST /up/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "space before colon": b"POST /up/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
    "transfer-encoding in HTTP/1.0": b"POST /up/x HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "NUL in a header value": b"GET /up/x HTTP/1.1\r\nHost: a\r\nX-A: a\x00b\r\n\r\n",
    "CR in a header value": b"GET /up/x HTTP/1.1\r\nHost: a\r\nX-A: a\rb\r\n\r\n",
    "LF in a header value": b"GET /up/x HTTP/1.1\r\nHost: a\r\nX-A: a\nX-B: c\r\n\r\n",
    "bare LF line endings": b"GET /up/x HTTP/1.1\nHost: a\nX-A: b\n\n",
    "obsolete line folding": b"GET /up/x HTTP/1.1\r\nHost: a\r\nX-A: a\r\n b\r\n\r\n",
    "NUL in a header name": b"GET /up/x HTTP/1.1\r\nHost: a\r\nX\x00A: a\r\n\r\n",
    "bad chunk size": b"POST /up/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
    "LF in a chunk extension": b"POST /up/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;a\nb\r\nhello\r\n0\r\n\r\n",
}


@pytest.fixture
async def sidecar(upstreams: StartUpstream) -> AsyncIterator[tuple[SidecarProxy, Upstream]]:
    up = await upstreams("up")
    registry = EmbeddedRegistry()
    await registry.start()
    sid = f"up-127.0.0.1-{up.port}"
    await registry.register(ServiceInstance(sid, "up", "127.0.0.1", up.port, state=ServiceState.HEALTHY))
    proxy = SidecarProxy("127.0.0.1:0", registry)
    await proxy.start()
    yield proxy, up
    await proxy.stop()


async def send_raw(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(65536), 5)
    finally:
        writer.close()


@pytest.mark.parametrize("case", list(SMUGGLING))
async def test_smuggling_inputs_get_400_and_are_not_forwarded(
    sidecar: tuple[SidecarProxy, Upstream], case: str
) -> None:
    proxy, up = sidecar
    answer = await send_raw(proxy.port, SMUGGLING[case])
    assert answer.split(b"\r\n", 1)[0].endswith(b" 400 Bad Request"), answer[:200]
    assert up.hits == 0


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST /up/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
        b"POST /up/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"GET /up/x HTTP/1.0\r\nHost: a\r\n\r\n",
    ],
)
async def test_well_framed_requests_are_forwarded(
    sidecar: tuple[SidecarProxy, Upstream], request_bytes: bytes
) -> None:
    proxy, up = sidecar
    answer = await send_raw(proxy.port, request_bytes)
    assert b" 200 OK" in answer.split(b"\r\n", 1)[0]
    assert answer.endswith(b"up")
    assert up.hits == 1


def framed(version: tuple[int, int], headers: list[tuple[str, str]]) -> web.Request:
    from aiohttp.http import HttpVersion

    return make_mocked_request("POST", "/up/x", headers=CIMultiDict(headers), version=HttpVersion(*version))


@pytest.mark.parametrize(
    ("version", "headers"),
    [
        ((1, 1), [("Content-Length", "5"), ("Transfer-Encoding", "chunked")]),
        ((1, 1), [("Content-Length", "5"), ("Content-Length", "5")]),
        ((1, 1), [("Content-Length", "-5")]),
        ((1, 1), [("Content-Length", "\u0665")]),  # a non-ASCII digit (Arabic-Indic five)
        ((1, 1), [("Transfer-Encoding", "chunked, chunked")]),
        ((1, 1), [("Transfer-Encoding", "gzip, chunked")]),
        ((1, 1), [("Transfer-Encoding", "chunked"), ("Transfer-Encoding", "chunked")]),
        ((1, 0), [("Transfer-Encoding", "chunked")]),
    ],
)
def test_check_framing_refuses_what_a_lenient_parser_might_pass(
    version: tuple[int, int], headers: list[tuple[str, str]]
) -> None:
    with pytest.raises(UnsafeFraming, match=r"^headers"):
        check_framing(framed(version, headers))


def test_check_framing_accepts_plain_framing() -> None:
    for headers in ([], [("Content-Length", "0")], [("Transfer-Encoding", "Chunked")]):
        check_framing(framed((1, 1), headers))
