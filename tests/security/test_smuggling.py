"""Request smuggling at both doors of the mesh: `/call` on a real `meshkit serve` (uvicorn, httptools)
and a real `meshkit proxy` process, each sent the same ambiguous framings as raw bytes.

Every body is one the door would forward if it read the framing one way (a valid `/call`
JSON, or any bytes for the sidecar), so "never forwarded" is a real claim: the instance
behind counts every request it gets, and the well-framed controls show that it does count.
Each refusal must be one 400 and nothing after it (a second status line would be a
smuggled request answered). tests/proxy/test_framing.py holds the in-process sidecar cases.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

import aiohttp
import orjson
import pytest

from tests.conftest import StartUpstream
from tests.security.conftest import ProxyProcess, exchange, register, status_of
from tests.support.plane import API, PlaneProcess
from tests.support.servers import Upstream

Framing = Callable[[bytes], bytes]  # body -> the framing headers, the blank line and the body on the wire


def chunked(body: bytes) -> bytes:
    return f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"


def cl(body: bytes, value: str | None = None) -> bytes:
    return f"Content-Length: {value if value is not None else len(body)}\r\n".encode()


SMUGGLING: dict[str, Framing] = {
    "content-length then transfer-encoding": lambda b: (
        cl(b) + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(b)
    ),
    "transfer-encoding then content-length": lambda b: (
        b"Transfer-Encoding: chunked\r\n" + cl(b) + b"\r\n" + chunked(b)
    ),
    "content-length with transfer-encoding identity": lambda b: (
        cl(b) + b"Transfer-Encoding: identity\r\n\r\n" + b
    ),
    "duplicate content-length, different": lambda b: cl(b) + cl(b, str(len(b) + 1)) + b"\r\n" + b + b"x",
    "duplicate content-length, equal": lambda b: cl(b) + cl(b) + b"\r\n" + b,
    "content-length list": lambda b: cl(b, f"{len(b)}, {len(b)}") + b"\r\n" + b,
    "signed content-length": lambda b: cl(b, f"+{len(b)}") + b"\r\n" + b,
    "negative content-length": lambda b: cl(b, "-1") + b"\r\n" + b,
    "hex content-length": lambda b: cl(b, hex(len(b))) + b"\r\n" + b,
    "content-length with inner space": lambda b: cl(b, f"{len(b)} 0") + b"\r\n" + b,
    "unknown transfer-encoding": lambda b: b"Transfer-Encoding: xchunked\r\n\r\n" + chunked(b),
    "gzip transfer-encoding": lambda b: b"Transfer-Encoding: gzip\r\n\r\n" + chunked(b),
    "gzip then chunked": lambda b: b"Transfer-Encoding: gzip, chunked\r\n\r\n" + chunked(b),
    "chunked twice in one header": lambda b: b"Transfer-Encoding: chunked, chunked\r\n\r\n" + chunked(b),
    "duplicate transfer-encoding": lambda b: (
        b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(b)
    ),
    "space before colon": lambda b: b"Transfer-Encoding : chunked\r\n\r\n" + chunked(b),
    "vertical tab in transfer-encoding": lambda b: b"Transfer-Encoding: \x0bchunked\r\n\r\n" + chunked(b),
    "NUL in transfer-encoding": lambda b: b"Transfer-Encoding: chunked\x00\r\n\r\n" + chunked(b),
    "NUL in a header value": lambda b: b"X-A: a\x00b\r\n" + cl(b) + b"\r\n" + b,
    "CR in a header value": lambda b: b"X-A: a\rb\r\n" + cl(b) + b"\r\n" + b,
    "LF in a header value": lambda b: b"X-A: a\nTransfer-Encoding: chunked\r\n" + cl(b) + b"\r\n" + b,
    "NUL in a header name": lambda b: b"X\x00A: a\r\n" + cl(b) + b"\r\n" + b,
    "CR in a header name": lambda b: b"X\rA: a\r\n" + cl(b) + b"\r\n" + b,
    "obsolete line folding": lambda b: b"X-A: a\r\n b\r\n" + cl(b) + b"\r\n" + b,
    "bad chunk size": lambda b: (
        b"Transfer-Encoding: chunked\r\n\r\n0x" + f"{len(b):x}\r\n".encode() + b + b"\r\n0\r\n\r\n"
    ),
    "overflowing chunk size": lambda b: (
        b"Transfer-Encoding: chunked\r\n\r\nffffffffffffffffff1\r\n" + b + b"\r\n0\r\n\r\n"
    ),
    "LF in a chunk extension": lambda b: (
        b"Transfer-Encoding: chunked\r\n\r\n" + f"{len(b):x};a\nb\r\n".encode() + b + b"\r\n0\r\n\r\n"
    ),
}
HTTP10_TE = "transfer-encoding in HTTP/1.0"
BARE_LF = "bare LF line endings"
WELL_FRAMED: dict[str, Framing] = {
    "content-length": lambda b: cl(b) + b"\r\n" + b,
    "chunked": lambda b: b"Transfer-Encoding: chunked\r\n\r\n" + chunked(b),
}


def build(request_line: bytes, headers: bytes, body: bytes, framing: Framing) -> bytes:
    return request_line + b"\r\nHost: 127.0.0.1\r\nConnection: close\r\n" + headers + framing(body)


def corpus(request_line: bytes, headers: bytes, body: bytes) -> dict[str, bytes]:
    cases = {name: build(request_line, headers, body, framing) for name, framing in SMUGGLING.items()}
    http10 = request_line.replace(b"HTTP/1.1", b"HTTP/1.0")
    cases[HTTP10_TE] = build(http10, headers, body, SMUGGLING["gzip then chunked"]).replace(
        b"gzip, chunked", b"chunked"
    )
    cases[BARE_LF] = build(request_line, headers, body, WELL_FRAMED["content-length"]).replace(b"\r\n", b"\n")
    return cases


CASES = [*SMUGGLING, HTTP10_TE, BARE_LF]
STATUS_LINE = re.compile(rb"(?:^|\r\n)HTTP/1\.[01] \d{3} ")


@pytest.fixture
async def target(upstreams: StartUpstream, plane: PlaneProcess) -> tuple[Upstream, str]:
    up = await upstreams("smuggle")
    name = f"smuggle-{up.port}"
    async with aiohttp.ClientSession() as session:
        await register(session, plane, name, up.port)
    return up, name


def call_request(plane: PlaneProcess, service: str) -> tuple[bytes, bytes, bytes]:
    body = orjson.dumps({"service_name": service, "method": "POST", "path": "/x", "body": "smuggled"})
    headers = f"Authorization: Bearer {plane.token}\r\nContent-Type: application/json\r\n".encode()
    return f"POST {API}/call HTTP/1.1".encode(), headers, body


def proxy_request(service: str) -> tuple[bytes, bytes, bytes]:
    return f"POST /{service}/x HTTP/1.1".encode(), b"Content-Type: text/plain\r\n", b"hello, upstream"


def plane_port(plane: PlaneProcess) -> int:
    return int(plane.url.rsplit(":", 1)[1])


def forwarded(up: Upstream) -> list[str]:
    """What reached the instance, without the plane's own health checks."""
    return [path for path in up.paths if path != "/health"]


async def assert_refused(port: int, data: bytes, up: Upstream) -> None:
    answer = await exchange(port, data, wait=3.0)
    assert status_of(answer) == 400, answer[:300]
    assert len(STATUS_LINE.findall(answer)) == 1, answer[:600]  # one answer: nothing smuggled behind it
    await asyncio.sleep(0.05)  # anything forwarded would have reached the instance by now
    assert forwarded(up) == []


def test_corpus_covers_the_issue() -> None:
    names = " ".join(CASES)
    for kind in ("content-length then transfer-encoding", "duplicate content-length", "transfer-encoding"):
        assert kind in names
    for char in ("NUL", "CR", "LF"):
        assert any(char in name for name in CASES)
    assert len(CASES) >= 25


@pytest.mark.parametrize("case", CASES)
async def test_call_refuses_ambiguous_framing(
    plane: PlaneProcess, target: tuple[Upstream, str], case: str
) -> None:
    up, service = target
    await assert_refused(plane_port(plane), corpus(*call_request(plane, service))[case], up)


@pytest.mark.parametrize("case", CASES)
async def test_proxy_process_refuses_ambiguous_framing(
    proxy: ProxyProcess, target: tuple[Upstream, str], case: str
) -> None:
    up, service = target
    await assert_refused(proxy.port, corpus(*proxy_request(service))[case], up)
    assert proxy.alive()


@pytest.mark.parametrize("framing", list(WELL_FRAMED))
async def test_well_framed_requests_reach_the_instance_through_both(
    plane: PlaneProcess, proxy: ProxyProcess, target: tuple[Upstream, str], framing: str
) -> None:
    up, service = target
    line, headers, body = call_request(plane, service)
    answer = await exchange(plane_port(plane), build(line, headers, body, WELL_FRAMED[framing]))
    assert status_of(answer) == 200 and b'"status_code":200' in answer, answer[:400]
    assert forwarded(up) == ["/x"]
    answer = await exchange(proxy.port, build(*proxy_request(service), WELL_FRAMED[framing]))
    assert status_of(answer) == 200, answer[:400]
    assert forwarded(up) == ["/x", "/x"]
