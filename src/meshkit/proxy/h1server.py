"""The sidecar's lean HTTP/1.1 server: asyncio Protocols and httptools' request parser, no aiohttp.

aiohttp's server costs about 100 us of CPU per proxied request on these machines, most
of the sidecar's budget (bench/bench_proxy.py), so `meshkit proxy --engine h1` parses
requests in parser callbacks instead (the way uvicorn does) and hands each one to the
same mapping as the aiohttp engine (`meshkit.proxy.forward`). Requests on a connection
are answered one at a time and in order: pipelined requests wait in a queue while
reading pauses (RFC 9112 9.3.2). What the proxy cannot trust is refused before anything
is forwarded: llhttp rejects malformed syntax, CR/LF/NUL in fields and conflicting
lengths (400), `check_header_framing` repeats the smuggling rules (400), oversized
request targets (414), header sections (431) and bodies (413) are cut off while they
arrive; after a framing or size refusal the connection is closed, since where the next
request starts is no longer known.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Collection
from http import HTTPStatus
from typing import cast

from httptools import HttpParserCallbackError, HttpParserError, HttpParserUpgrade, HttpRequestParser
from multidict import CIMultiDict, istr

from meshkit.client import MeshClient
from meshkit.plane.headers import HOP_BY_HOP, INTERNAL_PREFIX, SET_BY_TRANSPORT
from meshkit.plane.ssrf import UnsafePath
from meshkit.proxy.forward import call_service, error_reply, without_hop_by_hop
from meshkit.proxy.framing import UnsafeFraming, check_header_framing
from meshkit.proxy.routing import BadRoute, split_target
from meshkit.transport.h1.head import field_lines
from meshkit.types import Response

log = logging.getLogger(__name__)

MAX_TARGET = 8190  # aiohttp's max_line_size
MAX_FIELD = 16384  # one header line, as the aiohttp engine's max_field_size
MAX_HEADERS = 100
_STATUS_LINES = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n" for s in HTTPStatus}
_NO_BODY = frozenset({204, 304})
_METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")}
_CONTENT_LENGTH, _TRANSFER_ENCODING = istr("Content-Length"), istr("Transfer-Encoding")
_EXPECT, _CONNECTION = istr("Expect"), istr("Connection")
# Fields that never go upstream as they came: hop-by-hop ones, Host and Content-Length (the
# transport writes its own) and the mesh's `X-Meshkit-*`. They are set aside while parsing,
# so the caller's other fields become the upstream request's headers with no copy. Names are
# ASCII tokens (llhttp refuses any other byte in one), so lower-casing their bytes is exact.
_DROPPED = HOP_BY_HOP | SET_BY_TRANSPORT
_ASIDE = frozenset(name.encode() for name in _DROPPED)
_INTERNAL = INTERNAL_PREFIX.encode()
_OTHER_DROPPED = frozenset(istr(name) for name in _DROPPED - {"connection", "content-length"})
_PLAIN_CONNECTION = frozenset({"keep-alive", "close"})  # Connection values that name no other field


class _Refusal(Exception):
    """Raised in a parser callback (by `_stop`, which records the answer): answer it and close."""


class _Pending:
    """A parsed request: `headers` go upstream, `internal` holds the fields set aside."""

    __slots__ = ("body", "headers", "internal", "keep_alive", "method", "path", "refusal", "service")

    def __init__(self, method: str, service: str, path: str, headers: CIMultiDict[str],
                 internal: CIMultiDict[str], body: bytes | None, keep_alive: bool,
                 refusal: Response | None) -> None:  # fmt: skip
        self.method, self.service, self.path, self.headers = method, service, path, headers
        self.internal, self.body, self.keep_alive, self.refusal = internal, body, keep_alive, refusal


def answer_fields(headers: CIMultiDict[str]) -> Collection[tuple[str, str]]:
    """The answer's fields without hop-by-hop ones and Content-Length (written from the body).
    A copy and C-level removals: the two an answer nearly always has, then the rest if any."""
    kept = headers.copy()
    kept.popall(_CONTENT_LENGTH, None)
    named = kept.popall(_CONNECTION, None)
    if named is not None and (len(named) > 1 or named[0].lower() not in _PLAIN_CONNECTION):
        return without_hop_by_hop(headers).items()  # Connection names more fields to drop
    if not kept.keys().isdisjoint(_OTHER_DROPPED):
        for name in _OTHER_DROPPED:
            kept.popall(name, None)
    return kept.items()


def encode_response(answer: Response, head_only: bool, keep_alive: bool) -> bytes:
    status = answer.status
    body = answer.body
    head = _STATUS_LINES.get(status) or f"HTTP/1.1 {status} Unknown\r\n"
    head += field_lines(answer_fields(answer.headers))
    if status >= 200 and status not in _NO_BODY:
        head += f"Content-Length: {len(body)}\r\n"
    if not keep_alive:
        head += "Connection: close\r\n"
    data = (head + "\r\n").encode("utf-8", "surrogateescape")
    if head_only or status in _NO_BODY or status < 200:
        return data
    return data + body


class H1ProxyConnection(asyncio.Protocol):
    """One caller's connection: parse, check, queue, forward, answer in order."""

    def __init__(self, server: H1ProxyServer) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.parser = HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.remote: str | None = None
        self.queue: deque[_Pending] = deque()
        # The connection's answering task, started by its first request and kept while the
        # connection lives: between requests it waits on `_wakeup` (a future per request
        # costs a fraction of a task: a task registers itself in asyncio's WeakSet of tasks,
        # in Python, and unregisters when freed). `busy`: a request is queued or being answered.
        self.task: asyncio.Task[None] | None = None
        self.busy = False
        self._wakeup: asyncio.Future[None] | None = None
        self.reading = True
        self.closing = False
        self.last_active = self.loop.time()
        self._idle_timer: asyncio.TimerHandle | None = None
        self.headers: CIMultiDict[str] = CIMultiDict()  # each request's fields for upstream
        self.internal: CIMultiDict[str] = CIMultiDict()  # and the fields set aside (see _ASIDE)
        self.stopped_by: Response | None = None  # a callback's refusal: answered, then the connection closes
        self.on_message_begin()

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass of it
        peer = transport.get_extra_info("peername")
        self.remote = str(peer[0]) if isinstance(peer, tuple) and peer else None
        self.server.connections.add(self)
        self._arm_idle_timer(self.server.keepalive_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.server.connections.discard(self)
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        self._wake()  # an idle task sees the connection gone and ends

    def data_received(self, data: bytes) -> None:
        self.last_active = self.loop.time()
        if self.closing:
            return
        try:
            self.parser.feed_data(data)
        except HttpParserCallbackError as exc:
            reply = self.stopped_by  # our own record: not httptools' __context__, which Python may overwrite
            if reply is not None:
                self._refuse(reply)
            else:
                log.exception("h1 proxy: request callback failed", exc_info=exc.__context__)
                self._refuse(error_reply(500, "InternalError", "the proxy failed reading the request"))
        except HttpParserUpgrade:
            self.closing = True  # the request was queued; what follows is another protocol: not read
        except HttpParserError as exc:
            self._refuse(error_reply(400, "BadRequest", f"request: {exc}"))

    # -- httptools callbacks -------------------------------------------------------------

    def _stop(self, reply: Response) -> _Refusal:
        """The exception a callback raises to answer `reply` and close; `data_received` reads `stopped_by`."""
        self.stopped_by = reply
        return _Refusal()

    def on_message_begin(self) -> None:
        self.url = b""
        self.fields: list[tuple[str, str]] = []
        self.aside: list[tuple[str, str]] = []
        self.header_bytes = 0
        self.chunks: list[bytes] = []
        self.size = 0
        self.route: tuple[str, str] | None = None
        self.refusal: Response | None = None

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > MAX_TARGET:
            raise self._stop(error_reply(414, "TargetTooLong", f"target: must be at most {MAX_TARGET} bytes"))

    def on_header(self, name: bytes, value: bytes) -> None:
        size = len(name) + len(value)
        total = self.header_bytes = self.header_bytes + size
        fields = self.fields
        if (
            size > MAX_FIELD
            or total > self.server.max_header_bytes
            or len(fields) + len(self.aside) >= MAX_HEADERS
        ):
            detail = (f"headers: at most {MAX_HEADERS} fields, {MAX_FIELD} bytes each and "
                      f"{self.server.max_header_bytes} bytes in all")  # fmt: skip
            raise self._stop(error_reply(431, "HeadersTooLarge", detail))
        try:  # strict UTF-8 first: the same text when it succeeds, at a fraction of the cost
            field = (name.decode(), value.decode())
        except UnicodeDecodeError:
            field = (name.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape"))
        lowered = name.lower()
        if lowered in _ASIDE or lowered.startswith(_INTERNAL):
            self.aside.append(field)
        else:
            fields.append(field)

    def on_headers_complete(self) -> None:
        headers = self.headers = CIMultiDict(self.fields)
        aside = self.internal = CIMultiDict(self.aside)
        if _TRANSFER_ENCODING in aside or _CONTENT_LENGTH in aside:  # a body: is its length clear?
            try:
                check_header_framing(aside, self.parser.get_http_version() != "1.0")
            except UnsafeFraming as exc:
                raise self._stop(error_reply(400, "UnsafeFraming", str(exc))) from None
            length = aside.get(_CONTENT_LENGTH)
            if length is not None and int(length) > self.server.max_body:
                raise self._stop(self.server.too_large())
        if _CONNECTION in aside:  # the fields it names are hop-by-hop too (RFC 9110 7.6.1)
            for value in aside.getall(_CONNECTION):
                for token in value.split(","):
                    headers.popall(token.strip(), None)
        url = self.url
        target = url.decode() if url.isascii() else url.decode("utf-8", "surrogateescape")
        try:
            self.route = split_target(target)
        except (BadRoute, UnsafePath) as exc:
            self.refusal = error_reply(400, type(exc).__name__, str(exc))
        if _EXPECT in headers:
            expect = headers[_EXPECT]
            if expect.lower() == "100-continue" and self.transport is not None:
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > self.server.max_body:
            raise self._stop(self.server.too_large())
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        body = b"".join(self.chunks) if self.chunks else None
        service, path = self.route or ("", "")
        raw_method = self.parser.get_method()
        method = _METHODS.get(raw_method) or raw_method.decode("ascii", "replace")
        keep_alive = self.parser.should_keep_alive()
        pending = _Pending(method, service, path, self.headers, self.internal, body, keep_alive, self.refusal)
        if self.busy:
            self.queue.append(pending)
            if self.reading and self.transport is not None:
                self.reading = False
                self.transport.pause_reading()  # one answer at a time: let TCP hold the rest
        else:
            self._answer(pending)

    # -- answering -----------------------------------------------------------------------

    def _answer(self, pending: _Pending) -> None:
        """Hand `pending` to the answering task (started for the first request, woken after that)."""
        self.busy = True
        self.queue.append(pending)
        if self.task is None:
            self.task = self.loop.create_task(self._run())
        else:
            self._wake()

    def _wake(self) -> None:
        waiter, self._wakeup = self._wakeup, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _run(self) -> None:
        """Answer queued requests in order; wait for the next while the connection stays open."""
        server, queue = self.server, self.queue
        try:
            while True:
                while queue:
                    if not await self._answer_one(queue.popleft()):
                        return
                self.busy = False
                if not self.reading and self.transport is not None and not self.closing:
                    self.reading = True
                    self.transport.resume_reading()
                if self.transport is None or self.closing or server.stopping:
                    return
                waiter = self._wakeup = self.loop.create_future()
                await waiter
        finally:
            self.busy = False
            self.task = None

    async def _answer_one(self, pending: _Pending) -> bool:
        """Forward and write one answer; False when the connection is done."""
        server = self.server
        answer = pending.refusal
        if answer is None:
            try:
                answer = await call_service(server.client, pending.method, pending.service, pending.path,
                                            pending.headers, pending.internal, pending.body, self.remote)  # fmt: skip
            except Exception:
                log.exception("h1 proxy: forwarding %s %s failed", pending.method, pending.path)
                answer = error_reply(500, "InternalError", "the proxy failed forwarding the request")
        transport = self.transport
        if transport is None or transport.is_closing():
            return False
        keep_alive = pending.keep_alive and not server.stopping and not (self.closing and not self.queue)
        transport.write(encode_response(answer, pending.method == "HEAD", keep_alive))
        if not keep_alive:
            self.closing = True
            transport.close()
            return False
        self.last_active = self.loop.time()
        return True

    def _refuse(self, reply: Response) -> None:
        """Answer `reply` once the requests before it are answered, then close."""
        self.closing = True
        pending = _Pending("GET", "", "", CIMultiDict(), CIMultiDict(), None, False, reply)
        if self.busy:
            self.queue.append(pending)
        else:
            self._answer(pending)

    # -- idle connections ----------------------------------------------------------------

    def _arm_idle_timer(self, delay: float) -> None:
        self._idle_timer = self.loop.call_later(delay, self._check_idle)

    def _check_idle(self) -> None:
        self._idle_timer = None
        if self.transport is None:
            return
        idle_for = self.loop.time() - self.last_active
        timeout = self.server.keepalive_timeout
        if not self.busy and idle_for >= timeout:
            self.transport.close()
            return
        self._arm_idle_timer(max(timeout - idle_for, 0.05) if not self.busy else timeout)

    def close_when_idle(self) -> None:
        if not self.busy and self.transport is not None:
            self.transport.close()
            self._wake()  # its task ends now, not when the loop reports the connection lost


class H1ProxyServer:
    """Listens for sidecar callers and answers each request through `client`."""

    def __init__(
        self,
        client: MeshClient,
        *,
        max_body: int,
        max_header_bytes: int = 65536,
        keepalive_timeout: float = 75.0,
    ) -> None:
        if isinstance(max_body, bool) or not isinstance(max_body, int) or max_body < 0:
            raise ValueError(f"max_body: must be an integer number of bytes >= 0, got {max_body!r}")
        if (
            isinstance(max_header_bytes, bool)
            or not isinstance(max_header_bytes, int)
            or max_header_bytes < 1024
        ):
            raise ValueError(f"max_header_bytes: must be an integer >= 1024, got {max_header_bytes!r}")
        if not isinstance(keepalive_timeout, int | float) or keepalive_timeout <= 0:
            raise ValueError(f"keepalive_timeout: must be a number of seconds > 0, got {keepalive_timeout!r}")
        self.client = client
        self.max_body = max_body
        self.max_header_bytes = max_header_bytes
        self.keepalive_timeout = float(keepalive_timeout)
        self.connections: set[H1ProxyConnection] = set()
        self.stopping = False
        self._server: asyncio.Server | None = None

    def too_large(self) -> Response:
        return error_reply(413, "BodyTooLarge", f"body: must be at most {self.max_body} bytes")

    async def start(self, host: str, port: int, *, backlog: int = 1024) -> int:
        """Listen on `host:port`; the port bound (useful with port 0)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: H1ProxyConnection(self), host, port, backlog=backlog)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self, grace: float = 5.0) -> None:
        """Stop listening, let answers in flight finish for up to `grace` seconds, close the rest."""
        self.stopping = True
        if self._server is not None:
            self._server.close()
            self._server = None
        for conn in list(self.connections):
            conn.close_when_idle()
        tasks = [c.task for c in self.connections if c.task is not None]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=grace)
            for task in late:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*late, return_exceptions=True)
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()
