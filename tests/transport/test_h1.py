"""H1Transport against real servers on 127.0.0.1: the aiohttp transport's cases, then HTTP/1.1 itself.

aiohttp apps (the `upstreams` fixture) for well-behaved servers; a scripted raw server
(`tests.transport.scripted`) for what aiohttp never does: malformed answers, HTTP/1.0
bodies read until close, interim 1xx answers, and a keep-alive connection dropped just
as the next request is written.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from meshkit import ConnectError, ConnectionReset, Request, RequestTimeout, ServiceInstance
from meshkit.clock import SYSTEM_CLOCK
from meshkit.plane.ssrf import UnsafeConnect, is_unsafe_connect, unsafe_ip_reason
from meshkit.transport.base import DEADLINE_HEADER
from meshkit.transport.h1 import H1Transport, UnsafeRequest
from meshkit.transport.h1.connection import H1Connection
from tests.conftest import StartUpstream
from tests.support.servers import free_port, hang, reset, status
from tests.transport.scripted import Conn, answer_each, read_request, scripted

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def inst(port: int, address: str = "127.0.0.1") -> ServiceInstance:
    return ServiceInstance(f"svc-{address}-{port}", "svc", address, port)


class Seen(list[web.Request]):
    """The requests an upstream handled, and the client address each came from."""

    def __init__(self) -> None:
        super().__init__()
        self.peers: list[object] = []

    def append(self, request: web.Request) -> None:
        super().append(request)
        assert request.transport is not None
        self.peers.append(request.transport.get_extra_info("peername"))


def peers(seen: Seen) -> set[object]:
    """The distinct connections the requests came on."""
    return set(seen.peers)


def recording(seen: Seen):  # type: ignore[no-untyped-def]
    async def handle(request: web.Request) -> web.StreamResponse:
        seen.append(request)
        await request.read()
        return web.Response(text="ok")

    return handle


@pytest.fixture
async def transport():  # type: ignore[no-untyped-def]
    t = H1Transport()
    yield t
    await t.aclose()


# -- the aiohttp transport's cases -------------------------------------------------------


async def test_round_trip_keeps_status_headers_and_body(
    upstreams: StartUpstream, transport: H1Transport
) -> None:
    seen = Seen()

    async def echo(request: web.Request) -> web.StreamResponse:
        seen.append(request)
        return web.Response(body=b"got " + await request.read(), headers={"X-Back": "2"})

    up = await upstreams("a", echo)
    resp = await transport(
        Request("POST", "/x?y=1", CIMultiDict({"X-A": "1"}), b"hello", instance=inst(up.port))
    )
    assert resp.status == 200
    assert resp.body == b"got hello"
    assert resp.headers["X-Back"] == "2"
    assert resp.instance is not None and resp.instance.port == up.port
    assert up.paths == ["/x?y=1"]
    assert seen[0].headers["X-A"] == "1"
    assert seen[0].headers["Host"] == f"127.0.0.1:{up.port}"


async def test_5xx_is_a_response_not_an_error(upstreams: StartUpstream, transport: H1Transport) -> None:
    up = await upstreams("a", status(503))
    resp = await transport(Request(instance=inst(up.port)))
    assert resp.status == 503
    assert resp.body == b"status 503"


async def test_refused_connection_is_connect_error(transport: H1Transport) -> None:
    with pytest.raises(ConnectError) as info:
        await transport(Request(instance=inst(free_port())))
    assert info.value.instance_id is not None


async def test_hang_times_out_at_the_deadline(upstreams: StartUpstream, transport: H1Transport) -> None:
    up = await upstreams("a", hang())
    req = Request(instance=inst(up.port), deadline=SYSTEM_CLOCK.monotonic() + 0.2)
    with pytest.raises(RequestTimeout):
        await transport(req)
    with pytest.raises(RequestTimeout, match="before the attempt"):
        await transport(Request(instance=inst(up.port), deadline=SYSTEM_CLOCK.monotonic() - 1))
    assert up.hits == 1


async def test_an_exchange_in_flight_keeps_its_deadline_when_the_transport_closes(
    upstreams: StartUpstream,
) -> None:
    arrived = asyncio.Event()

    async def hang_after_arriving(request: web.Request) -> web.StreamResponse:
        arrived.set()
        return await hang()(request)

    up = await upstreams("a", hang_after_arriving)
    transport = H1Transport()
    call = asyncio.ensure_future(
        transport(Request(instance=inst(up.port), deadline=SYSTEM_CLOCK.monotonic() + 0.3))
    )
    await asyncio.wait_for(arrived.wait(), 10)
    await transport.aclose()  # busy connections close when released: the deadline still ends this one
    with pytest.raises(RequestTimeout):
        await asyncio.wait_for(call, 10)


async def test_reset_is_connection_reset(upstreams: StartUpstream, transport: H1Transport) -> None:
    up = await upstreams("a", reset())
    with pytest.raises(ConnectionReset):
        await transport(Request(instance=inst(up.port)))


async def test_deadline_travels_in_a_header(upstreams: StartUpstream, transport: H1Transport) -> None:
    seen = Seen()
    up = await upstreams("a", recording(seen))
    request = Request(instance=inst(up.port), headers={DEADLINE_HEADER: "99999", "X-A": "1"})
    request.deadline = SYSTEM_CLOCK.monotonic() + 5
    await transport(request)
    assert 4000 < int(seen[0].headers[DEADLINE_HEADER]) <= 5000  # the attempt's, in place of the caller's
    assert seen[0].headers.getall(DEADLINE_HEADER) == [seen[0].headers[DEADLINE_HEADER]]
    assert list(request.headers.items()) == [(DEADLINE_HEADER, "99999"), ("X-A", "1")]  # theirs, untouched


async def test_redirects_are_not_followed(upstreams: StartUpstream, transport: H1Transport) -> None:
    async def redirect(request: web.Request) -> web.StreamResponse:
        return web.Response(status=302, headers={"Location": "http://169.254.169.254/"})

    up = await upstreams("a", redirect)
    resp = await transport(Request(instance=inst(up.port)))
    assert resp.status == 302
    assert up.hits == 1


async def test_response_body_cap(upstreams: StartUpstream) -> None:
    async def big(request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"x" * 5000)

    async def big_chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for _ in range(5):
            await resp.write(b"y" * 1000)
        await resp.write_eof()
        return resp

    transport = H1Transport(max_response_bytes=1000)
    try:
        for handler in (big, big_chunked):
            up = await upstreams("a", handler)
            with pytest.raises(ConnectionReset, match="over 1000 bytes"):
                await transport(Request(instance=inst(up.port)))
        small = await upstreams("b")
        assert (await transport(Request(instance=inst(small.port)))).body == b"b"
    finally:
        await transport.aclose()


# -- HTTP/1.1 framing --------------------------------------------------------------------


async def test_chunked_response_is_reassembled_and_the_connection_reused(
    upstreams: StartUpstream, transport: H1Transport
) -> None:
    seen = Seen()

    async def chunked(request: web.Request) -> web.StreamResponse:
        seen.append(request)
        resp = web.StreamResponse(headers={"X-Kind": "chunked"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for part in (b"one,", b"two,", b"three"):
            await resp.write(part)
            await asyncio.sleep(0)
        await resp.write_eof()
        return resp

    up = await upstreams("a", chunked)
    for _ in range(3):
        resp = await transport(Request(instance=inst(up.port)))
        assert resp.body == b"one,two,three"
        assert resp.headers["X-Kind"] == "chunked"
    assert len(peers(seen)) == 1


async def test_keep_alive_reuses_one_connection(upstreams: StartUpstream, transport: H1Transport) -> None:
    seen = Seen()
    up = await upstreams("a", recording(seen))
    for i in range(10):
        body = b"p" * i if i % 2 else None
        assert (await transport(Request("POST", "/", body=body, instance=inst(up.port)))).status == 200
    assert len(seen) == 10
    assert len(peers(seen)) == 1


async def test_connection_close_is_not_reused() -> None:
    close = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
    async with scripted(answer_each(close, then_close=True)) as server:
        transport = H1Transport()
        try:
            for _ in range(3):
                assert (await transport(Request(instance=inst(server.port)))).body == b"ok"
        finally:
            await transport.aclose()
    assert len(server.conns) == 3
    assert all(len(c.requests) == 1 for c in server.conns)


async def test_head_204_and_304_end_at_their_headers_on_a_reused_connection(upstreams: StartUpstream) -> None:
    seen = Seen()

    async def varied(request: web.Request) -> web.StreamResponse:
        seen.append(request)
        code = int(request.query.get("code", "200"))
        if code == 200:
            return web.Response(body=b"z" * 100, headers={"X-Len": "100"})
        return web.Response(status=code, headers={"ETag": '"v1"'})

    up = await upstreams("a", varied)
    transport = H1Transport()
    try:
        soon = SYSTEM_CLOCK.monotonic() + 5  # a HEAD read as if it had a body would hang: fail instead
        head = await transport(Request("HEAD", "/", instance=inst(up.port), deadline=soon))
        assert (head.status, head.body, head.headers["Content-Length"]) == (200, b"", "100")
        for code in (204, 304):
            resp = await transport(Request("GET", f"/?code={code}", instance=inst(up.port)))
            assert (resp.status, resp.body, resp.headers["ETag"]) == (code, b"", '"v1"')
        assert (await transport(Request("GET", "/", instance=inst(up.port)))).body == b"z" * 100
    finally:
        await transport.aclose()
    assert len(seen) == 4
    assert len(peers(seen)) == 1


async def test_http10_body_read_until_close() -> None:
    reply = b"HTTP/1.0 200 OK\r\nX-Old: yes\r\n\r\nuntil the end"
    async with scripted(answer_each(reply, then_close=True)) as server:
        transport = H1Transport()
        try:
            for _ in range(2):
                resp = await transport(Request(instance=inst(server.port)))
                assert (resp.status, resp.body, resp.headers["X-Old"]) == (200, b"until the end", "yes")
        finally:
            await transport.aclose()
    assert len(server.conns) == 2


async def test_header_bytes_that_are_not_utf8_come_back_as_surrogate_escapes() -> None:
    reply = b"HTTP/1.1 200 OK\r\nX-Raw: caf\xe9\r\nX-Utf8: caf\xc3\xa9\r\nContent-Length: 2\r\n\r\nok"
    async with scripted(answer_each(reply)) as server:
        transport = H1Transport()
        try:
            resp = await transport(Request(instance=inst(server.port)))
        finally:
            await transport.aclose()
    assert (resp.headers["X-Raw"], resp.headers["X-Utf8"], resp.body) == ("caf\udce9", "café", b"ok")


async def test_interim_1xx_answers_are_skipped() -> None:
    reply = b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n" + OK
    async with scripted(answer_each(reply, OK)) as server:
        transport = H1Transport()
        try:
            first = await transport(Request(instance=inst(server.port)))
            second = await transport(Request(instance=inst(server.port)))
        finally:
            await transport.aclose()
    assert (first.status, first.body, "Link" in first.headers) == (200, b"ok", False)
    assert second.body == b"ok"
    assert len(server.conns) == 1


async def test_large_bodies_both_ways(upstreams: StartUpstream, transport: H1Transport) -> None:
    async def echo(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        return web.Response(body=body * 4)

    up = await upstreams("a", echo)
    payload = bytes(range(256)) * 3600  # 900 KiB (aiohttp's server takes at most 1 MiB), 3.6 MiB back
    resp = await transport(Request("PUT", "/", body=payload, instance=inst(up.port)))
    assert resp.body == payload * 4


async def test_framing_and_host_headers_are_the_transports(
    upstreams: StartUpstream, transport: H1Transport
) -> None:
    seen = Seen()
    up = await upstreams("a", recording(seen))
    headers = {
        "Host": "virtual.example",
        "Content-Length": "999",
        "Transfer-Encoding": "chunked",
        "X-Kept": "1",
    }
    await transport(Request("POST", "/", CIMultiDict(headers), b"four", instance=inst(up.port)))
    await transport(Request("POST", "/", instance=inst(up.port)))
    first, second = seen
    assert first.headers["Host"] == "virtual.example"
    assert first.headers.getall("Content-Length") == ["4"]
    assert "Transfer-Encoding" not in first.headers
    assert first.headers["X-Kept"] == "1"
    assert second.headers["Content-Length"] == "0"
    assert len(peers(seen)) == 1  # the framing held: the connection stayed in step


@pytest.mark.parametrize(
    ("path", "headers"),
    [("/", {"X-A": "a\r\nX-Injected: 1"}), ("/", {"X-A": "a\nb"}), ("/", {"X-A": "a\x00"}), ("/a b", {})],
)
async def test_injected_line_breaks_are_refused_before_sending(
    upstreams: StartUpstream, transport: H1Transport, path: str, headers: dict[str, str]
) -> None:
    up = await upstreams("a")
    with pytest.raises(UnsafeRequest, match=r"^headers"):
        await transport(Request("GET", path, CIMultiDict(headers), instance=inst(up.port)))
    assert up.hits == 0


# -- the pool ----------------------------------------------------------------------------


async def test_server_closing_an_idle_connection_means_a_fresh_one() -> None:
    async def answer_then_close_idle(
        conn: Conn, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await read_request(reader, conn)
        writer.write(OK)  # keep-alive by HTTP/1.1 default, then closed while idle

    async with scripted(answer_then_close_idle) as server:
        transport = H1Transport()
        try:
            assert (await transport(Request(instance=inst(server.port)))).body == b"ok"
            await asyncio.wait_for(server.wait_ended(1), 5)
            await asyncio.sleep(0.02)  # the FIN reaches the pooled connection
            assert (
                await transport(Request("POST", "/", body=b"x", instance=inst(server.port)))
            ).body == b"ok"
        finally:
            await transport.aclose()
    assert len(server.conns) == 2


async def test_stale_pooled_connection_is_replayed_only_when_safe() -> None:
    async def drop_second(conn: Conn, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader, conn)
        writer.write(OK)
        await read_request(reader, conn)  # the next request on this connection: dropped unanswered

    async with scripted(drop_second) as server:
        transport = H1Transport()
        try:
            await transport(Request(instance=inst(server.port)))
            resp = await transport(Request("GET", "/again", instance=inst(server.port)))
            assert resp.body == b"ok"  # replayed on a fresh connection
            assert len(server.conns) == 2
            with pytest.raises(ConnectionReset, match="not idempotent"):
                await transport(Request("POST", "/once", body=b"x", instance=inst(server.port)))
            keyed = Request(
                "POST", "/keyed", CIMultiDict({"Idempotency-Key": "k1"}), b"x", instance=inst(server.port)
            )
            await transport(Request(instance=inst(server.port)))  # a fresh connection to go stale
            assert (await transport(keyed)).body == b"ok"
        finally:
            await transport.aclose()
    posts = [r for r in server.requests if r.startswith(b"POST /once")]
    assert len(posts) == 1  # never sent twice


async def test_idle_connections_expire(upstreams: StartUpstream) -> None:
    seen = Seen()
    up = await upstreams("a", recording(seen))
    transport = H1Transport(keepalive_timeout=0.05)
    try:
        await transport(Request(instance=inst(up.port)))
        await asyncio.sleep(0.15)
        await transport(Request(instance=inst(up.port)))
    finally:
        await transport.aclose()
    assert len(peers(seen)) == 2


async def test_64_concurrent_requests(upstreams: StartUpstream, transport: H1Transport) -> None:
    async def slow_echo(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(0.01)
        return web.Response(text=request.query["i"])

    up = await upstreams("a", slow_echo)
    answers = await asyncio.gather(
        *(transport(Request("GET", f"/?i={i}", instance=inst(up.port))) for i in range(64))
    )
    assert [a.body for a in answers] == [str(i).encode() for i in range(64)]


async def test_limit_bounds_connections_and_waiters_respect_the_deadline(upstreams: StartUpstream) -> None:
    seen = Seen()

    async def slow(request: web.Request) -> web.StreamResponse:
        seen.append(request)
        await asyncio.sleep(0.02)
        return web.Response(text="ok")

    up = await upstreams("a", slow)
    transport = H1Transport(limit_per_endpoint=4)
    try:
        answers = await asyncio.gather(*(transport(Request(instance=inst(up.port))) for _ in range(32)))
        assert all(a.status == 200 for a in answers)
        assert len(peers(seen)) <= 4
        hung = await upstreams("b", hang())
        late = [
            transport(Request(instance=inst(hung.port), deadline=SYSTEM_CLOCK.monotonic() + 0.1))
            for _ in range(6)
        ]
        outcomes = await asyncio.gather(*late, return_exceptions=True)
        assert all(isinstance(o, RequestTimeout) for o in outcomes)  # the waiters too: none hangs
        assert hung.hits >= 4
    finally:
        await transport.aclose()


async def test_aclose_closes_idle_connections() -> None:
    async with scripted(answer_each(OK, OK)) as server:
        transport = H1Transport()
        await transport(Request(instance=inst(server.port)))
        await transport.aclose()
        await asyncio.wait_for(server.wait_ended(1), 5)
        assert server.closed == 1


# -- connect guard -----------------------------------------------------------------------


def refuse_unsafe(ip: str, port: int) -> None:
    reason = unsafe_ip_reason(ipaddress.ip_address(ip))
    if reason is not None:
        raise UnsafeConnect(13, f"refusing to connect to {ip}: {reason}")


async def test_connect_guard_judges_the_resolved_ip(upstreams: StartUpstream) -> None:
    up = await upstreams("a")
    dialled: list[tuple[str, int]] = []

    def guard(ip: str, port: int) -> None:
        dialled.append((ip, port))
        refuse_unsafe(ip, port)

    transport = H1Transport(connect_guard=guard)
    try:
        with pytest.raises(ConnectError, match=r"link-local|metadata") as info:
            await transport(Request(instance=inst(80, "169.254.169.254")))
        assert is_unsafe_connect(info.value)
        assert (await transport(Request(instance=inst(up.port, "localhost")))).body == b"a"
    finally:
        await transport.aclose()
    assert dialled[0] == ("169.254.169.254", 80)
    assert dialled[1][0] in ("127.0.0.1", "::1")


async def test_a_refused_address_sends_nothing(upstreams: StartUpstream) -> None:
    up = await upstreams("a")

    def no_loopback(ip: str, port: int) -> None:
        if ipaddress.ip_address(ip).is_loopback:
            raise UnsafeConnect(13, "loopback refused")

    transport = H1Transport(connect_guard=no_loopback)
    try:
        with pytest.raises(ConnectError, match="loopback refused"):
            await transport(Request(instance=inst(up.port)))
    finally:
        await transport.aclose()
    assert up.hits == 0


# -- malformed answers -------------------------------------------------------------------

MALFORMED = {
    "garbage status line": b"HELLO WORLD\r\n\r\n",
    "non-numeric status": b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n",
    "header without colon": b"HTTP/1.1 200 OK\r\nNoColon\r\nContent-Length: 0\r\n\r\n",
    "bad chunk size": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    "negative content-length": b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    "two content-lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    "NUL in a header": b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 0\r\n\r\n",
    "truncated body": b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
    "truncated body, lower-case name": b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort",
    "truncated chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
    "truncated head": b"HTTP/1.1 200 OK\r\nContent-Le",
    "unrequested upgrade": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n",
    "nothing at all": b"",
}


@pytest.mark.parametrize("case", list(MALFORMED))
async def test_malformed_answers_are_connection_reset(case: str) -> None:
    async with scripted(answer_each(MALFORMED[case], then_close=True)) as server:
        transport = H1Transport()
        try:
            with pytest.raises(ConnectionReset):
                await transport(Request(instance=inst(server.port), deadline=SYSTEM_CLOCK.monotonic() + 5))
        finally:
            await transport.aclose()


PIECES = [b"HTTP/1.1 ", b"200 OK", b"\r\n", b"Content-Length: ", b"5", b"Transfer-Encoding: chunked",
          b"0\r\n\r\n", b"hello", b":", b" ", b"\x00", b"ff", b"HTTP/1.0 ", b"\n"]  # fmt: skip


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(PIECES), max_size=14))
def test_arbitrary_answers_end_in_a_response_or_a_transport_error(parts: list[bytes]) -> None:
    answer = b"".join(parts)

    async def run() -> None:
        async with scripted(answer_each(answer, then_close=True)) as server:
            transport = H1Transport()
            try:
                req = Request(instance=inst(server.port), deadline=SYSTEM_CLOCK.monotonic() + 5)
                resp = await transport(req)
                assert 100 <= resp.status <= 999
            except (ConnectionReset, RequestTimeout) as exc:
                assert not isinstance(exc, RequestTimeout), "a closed connection must not hang"
            finally:
                await transport.aclose()

    asyncio.run(run())


def test_options_are_validated() -> None:
    for kwargs, field in [
        ({"limit_per_endpoint": -1}, "limit_per_endpoint"),
        ({"max_idle_per_endpoint": -1}, "max_idle_per_endpoint"),
        ({"keepalive_timeout": 0}, "keepalive_timeout"),
        ({"connect_timeout": 0}, "connect_timeout"),
        ({"max_response_bytes": -1}, "max_response_bytes"),
    ]:
        with pytest.raises(ValueError, match=f"^{field}: must"):
            H1Transport(**kwargs)  # type: ignore[arg-type]


async def test_a_head_answer_ends_at_its_headers_while_another_exception_is_handled() -> None:
    # httptools links a callback's exception to its wrapper through __context__, which Python
    # overwrites when the wrapper is raised while another exception is handled: the connection
    # must know a HEAD answer ended at its headers from its own record, not report a bad response.
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    conn = H1Connection(loop, "up-1", None)
    await loop.connect_accepted_socket(lambda: conn, ours)
    reader, writer = await asyncio.open_connection(sock=theirs)
    try:
        answer = conn.exchange(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n", None, True, 5.0)
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HEAD / ")
        try:
            raise KeyError("being handled while the answer arrives")
        except KeyError:
            conn.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
        exchange = await answer
        assert (exchange.status, exchange.body, exchange.reusable) == (200, b"", True)
    finally:
        conn.close()
        writer.close()
