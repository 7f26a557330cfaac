"""The h1 engine's own HTTP/1.1 behaviour, over raw sockets: keep-alive, pipelining, limits, Expect.

The shared sidecar behaviour (routing, headers, errors, smuggling) is tested on both
engines by the other files here; these cases are about the server itself.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from multidict import CIMultiDict

from meshkit.proxy import SidecarProxy
from meshkit.proxy.forward import outgoing_headers
from meshkit.proxy.h1server import H1ProxyConnection, encode_response
from meshkit.registry.embedded import EmbeddedRegistry
from meshkit.types import Response, ServiceInstance, ServiceState
from tests.conftest import StartUpstream
from tests.support.servers import Handler, Upstream


@pytest.fixture(autouse=True)
def engine() -> str:
    return "h1"  # overrides the conftest's both-engines parametrisation: these are h1-only


async def echo_path(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    return web.Response(body=request.path_qs.encode() + b"|" + body)


@pytest.fixture
async def sidecar(upstreams: StartUpstream) -> AsyncIterator[tuple[SidecarProxy, Upstream]]:
    up = await upstreams("up", echo_path)
    registry = EmbeddedRegistry()
    await registry.start()
    sid = f"up-127.0.0.1-{up.port}"
    await registry.register(ServiceInstance(sid, "up", "127.0.0.1", up.port, state=ServiceState.HEALTHY))
    proxy = SidecarProxy("127.0.0.1:0", registry, engine="h1", max_body=1000)
    assert proxy.h1_server is not None
    proxy.h1_server.keepalive_timeout = 0.2
    await proxy.start()
    yield proxy, up
    await proxy.stop()


class RawClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self) -> tuple[int, dict[str, str], bytes]:
        """The next response: status, headers (lower-case names), body by Content-Length."""
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 5)
        lines = head.decode().split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        length = int(headers.get("content-length", "0"))
        body = await asyncio.wait_for(self.reader.readexactly(length), 5) if length else b""
        return status, headers, body

    async def at_eof(self) -> bool:
        return await asyncio.wait_for(self.reader.read(1), 5) == b""


@pytest.fixture
async def raw(sidecar: tuple[SidecarProxy, Upstream]) -> AsyncIterator[RawClient]:
    reader, writer = await asyncio.open_connection("127.0.0.1", sidecar[0].port)
    yield RawClient(reader, writer)
    writer.close()


async def answer_through_sidecar(
    upstreams: StartUpstream, handler: Handler, request: bytes
) -> tuple[int, dict[str, str], bytes]:
    """`request`'s answer from an h1 sidecar whose one service `s` is served by `handler`."""
    up = await upstreams("s", handler)
    registry = EmbeddedRegistry()
    await registry.start()
    await registry.register(ServiceInstance("s-1", "s", "127.0.0.1", up.port, state=ServiceState.HEALTHY))
    async with SidecarProxy("127.0.0.1:0", registry, engine="h1") as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        try:
            client = RawClient(reader, writer)
            await client.send(request)
            return await client.response()
        finally:
            writer.close()


def get(path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: a\r\n{extra}\r\n".encode()


async def test_keep_alive_serves_many_requests_on_one_connection(raw: RawClient) -> None:
    for i in range(3):
        await raw.send(get(f"/up/n{i}"))
        status, headers, body = await raw.response()
        assert (status, body) == (200, f"/n{i}|".encode())
        assert "connection" not in headers


async def test_pipelined_requests_are_answered_in_order(
    raw: RawClient, sidecar: tuple[SidecarProxy, Upstream]
) -> None:
    post = b"POST /up/p HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbody"
    await raw.send(get("/up/one") + post + get("/up/three"))
    answers = [await raw.response() for _ in range(3)]
    assert [a[2] for a in answers] == [b"/one|", b"/p|body", b"/three|"]
    assert sidecar[1].paths == ["/one", "/p", "/three"]


async def test_a_bad_route_is_400_and_the_connection_stays(raw: RawClient) -> None:
    await raw.send(get("/Not_A_Service/x"))
    status, headers, _ = await raw.response()
    assert (status, headers["x-meshkit-error"]) == (400, "BadRoute")
    await raw.send(get("/up/after"))
    assert (await raw.response())[2] == b"/after|"


@pytest.mark.parametrize(
    ("request_bytes", "code"),
    [
        (get("/up/x", "X-Big: " + "a" * 17000 + "\r\n"), 431),
        (get("/up/x", "".join(f"X-{i}: v\r\n" for i in range(120))), 431),
        (get("/up/" + "x" * 9000), 414),
        (b"POST /up/x HTTP/1.1\r\nHost: a\r\nContent-Length: 1001\r\n\r\n", 413),
        (b"POST /up/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3e9\r\n" + b"z" * 1001, 413),
        (b"NOT HTTP AT ALL\r\n\r\n", 400),
    ],
)
async def test_limits_and_malformed_requests_are_refused_and_closed(
    raw: RawClient, sidecar: tuple[SidecarProxy, Upstream], request_bytes: bytes, code: int
) -> None:
    await raw.send(request_bytes)
    status, headers, _ = await raw.response()
    assert status == code
    assert headers["connection"] == "close"
    assert await raw.at_eof()
    assert sidecar[1].hits == 0


async def test_expect_100_continue_gets_an_interim_answer(raw: RawClient) -> None:
    await raw.send(b"POST /up/e HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    assert await asyncio.wait_for(raw.reader.readuntil(b"\r\n\r\n"), 5) == b"HTTP/1.1 100 Continue\r\n\r\n"
    await raw.send(b"hello")
    assert (await raw.response())[2] == b"/e|hello"


async def test_http10_without_keep_alive_is_closed_after_the_answer(raw: RawClient) -> None:
    await raw.send(b"GET /up/old HTTP/1.0\r\n\r\n")
    status, headers, body = await raw.response()
    assert (status, body, headers["connection"]) == (200, b"/old|", "close")
    assert await raw.at_eof()


async def test_head_has_headers_and_no_body(raw: RawClient) -> None:
    await raw.send(b"HEAD /up/h HTTP/1.1\r\nHost: a\r\n\r\n" + get("/up/next"))
    head = await asyncio.wait_for(raw.reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert (await raw.response())[2] == b"/next|"  # nothing between the two answers


async def test_one_task_answers_a_connections_requests_and_ends_when_the_server_stops(
    raw: RawClient, sidecar: tuple[SidecarProxy, Upstream]
) -> None:
    server = sidecar[0].h1_server
    assert server is not None
    server.keepalive_timeout = 3600  # idle, not timed out: only stop() may end it
    tasks = []
    for i in range(3):
        await raw.send(get(f"/up/t{i}"))
        assert (await raw.response())[2] == f"/t{i}|".encode()
        [conn] = server.connections
        tasks.append(conn.task)
    assert tasks[0] is not None and tasks.count(tasks[0]) == 3 and not tasks[0].done()  # kept, waiting
    assert not conn.busy
    # stop() must end an idle connection's waiting task, not wait out its grace period for it
    await asyncio.wait_for(server.stop(grace=3600), 30)
    assert tasks[0].done() and not tasks[0].cancelled() and conn.task is None
    assert await raw.at_eof()


async def test_idle_connections_are_closed(raw: RawClient) -> None:
    await raw.send(get("/up/x"))
    await raw.response()
    assert await raw.at_eof()  # keepalive_timeout is 0.2 s in this fixture


async def test_a_caller_leaving_mid_call_does_not_break_the_server(
    sidecar: tuple[SidecarProxy, Upstream],
) -> None:
    proxy, up = sidecar
    _, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(get("/up/gone"))
    writer.close()
    reader2, writer2 = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        client = RawClient(reader2, writer2)
        await client.send(get("/up/still"))
        assert (await client.response())[2] == b"/still|"
        assert "/still" in up.paths
    finally:
        writer2.close()


async def test_header_bytes_that_are_not_utf8_reach_the_instance_unchanged(upstreams: StartUpstream) -> None:
    async def echo_raw(request: web.Request) -> web.StreamResponse:
        return web.Response(body=dict(request.raw_headers).get(b"X-Raw", b"-"))

    request = b"GET /s/x HTTP/1.1\r\nHost: a\r\nX-Raw: caf\xe9 \xff\r\n\r\n"
    assert (await answer_through_sidecar(upstreams, echo_raw, request))[2] == b"caf\xe9 \xff"


SENT_FIELDS = [
    [("Host", "a"), ("X-A", "1"), ("Accept", "*/*")],
    [("Host", "a"), ("Connection", "keep-alive, X-Private"), ("X-Private", "p"), ("x-private", "q"), ("X-B", "2")],
    [("HOST", "a"), ("Keep-Alive", "timeout=5"), ("TE", "trailers"), ("Trailer", "X"), ("Upgrade", "h2c"),
     ("Proxy-Authorization", "Basic eA=="), ("Proxy-Connection", "x"), ("X-A", "1"), ("x-a", "2")],
    [("Host", "a"), ("X-Meshkit-Deadline-Ms", "5000"), ("x-MESHKIT-other", "1"), ("X-Meshkit", "kept"),
     ("Connection", "close"), ("Connection", "X-C"), ("X-C", "c"), ("Content-Length", "0")],
]  # fmt: skip


@pytest.mark.parametrize("fields", SENT_FIELDS)
async def test_the_upstream_gets_the_callers_fields_as_outgoing_headers_keeps_them(
    upstreams: StartUpstream, fields: list[tuple[str, str]]
) -> None:
    """The h1 engine sets fields aside while parsing; what goes upstream is `outgoing_headers`'s choice."""

    async def echo_fields(request: web.Request) -> web.StreamResponse:
        raw = [(k.decode(), v.decode()) for k, v in request.raw_headers]
        return web.json_response(raw)

    head = "".join(f"{name}: {value}\r\n" for name, value in fields)
    request = f"GET /s/x HTTP/1.1\r\n{head}\r\n".encode()
    status, _, body = await answer_through_sidecar(upstreams, echo_fields, request)
    assert status == 200
    written_by_transport = ("host", "content-length", "x-meshkit-deadline-ms")  # the deadline: the call's own
    received = [(k, v) for k, v in json.loads(body) if k.lower() not in written_by_transport]
    assert received == list(outgoing_headers(CIMultiDict(fields)).items())


@pytest.mark.parametrize(
    ("answer", "head_only", "keep_alive", "expected"),
    [
        (Response(200, CIMultiDict([("A", "1"), ("A", "2")]), b"body"), False, True,
         b"HTTP/1.1 200 OK\r\nA: 1\r\nA: 2\r\nContent-Length: 4\r\n\r\nbody"),
        (Response(299, CIMultiDict(), b"x"), False, False,
         b"HTTP/1.1 299 Unknown\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx"),
        (Response(204, CIMultiDict({"X-Raw": "caf\udce9"}), b""), False, True,
         b"HTTP/1.1 204 No Content\r\nX-Raw: caf\xe9\r\n\r\n"),
        (Response(404, CIMultiDict({"N": 7}), b"gone"), True, True,  # type: ignore[dict-item]
         b"HTTP/1.1 404 Not Found\r\nN: 7\r\nContent-Length: 4\r\n\r\n"),
    ],
)  # fmt: skip
def test_encode_response(answer: Response, head_only: bool, keep_alive: bool, expected: bytes) -> None:
    assert encode_response(answer, head_only, keep_alive) == expected


@pytest.mark.parametrize("method", ["GET", "DELETE", "OPTIONS", "PURGE"])
async def test_the_method_reaches_the_instance_as_sent(upstreams: StartUpstream, method: str) -> None:
    async def echo_method(request: web.Request) -> web.StreamResponse:
        return web.Response(text=request.method)

    request = f"{method} /s/x HTTP/1.1\r\nHost: a\r\n\r\n".encode()
    assert (await answer_through_sidecar(upstreams, echo_method, request))[:3:2] == (200, method.encode())


async def test_a_refusal_raised_in_a_parser_callback_survives_an_exception_being_handled(
    sidecar: tuple[SidecarProxy, Upstream],
) -> None:
    # httptools links a callback's exception to its wrapper through __context__, which Python
    # overwrites when the wrapper is raised while another exception is handled: the refusal must
    # come from the connection's own record, or an oversized request would be answered 500.
    proxy, _ = sidecar
    assert proxy.h1_server is not None
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    conn = H1ProxyConnection(proxy.h1_server)
    await loop.connect_accepted_socket(lambda: conn, ours)
    reader, writer = await asyncio.open_connection(sock=theirs)
    try:
        raise KeyError("being handled while the request arrives")
    except KeyError:
        conn.data_received(b"GET /up/" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n")
    status, _, body = await RawClient(reader, writer).response()
    writer.close()
    assert status == 414, body
