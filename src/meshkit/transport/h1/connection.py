"""One HTTP/1.1 client connection: an asyncio Protocol carrying one exchange at a time.

The response is parsed by httptools (llhttp, the parser Node.js uses) in callbacks, so
no task, stream or buffer object sits between the socket and the `Response`. llhttp
frames the body by Content-Length or chunked coding and knows that 1xx, 204 and 304
answers have none; two cases it cannot know are handled here: a HEAD response (llhttp
does not see the request, so parsing stops at the end of the headers and the parser is
replaced) and a body read until the connection closes (HTTP/1.0 style, ended at EOF).
Any byte that arrives outside an exchange, or a second message after the first, makes
the connection unfit for reuse (RFC 9112 9.3: no pipelining here, so it is a fault).
"""

from __future__ import annotations

import asyncio
from typing import cast

from httptools import HttpParserCallbackError, HttpParserError, HttpResponseParser

from meshkit.errors import ConnectionReset, RequestTimeout, TransportError
from meshkit.transport.h1.deadlines import ExchangeDeadlines

Headers = list[tuple[str, str]]
_FRAMING = ("content-length", "transfer-encoding")


class StaleConnection(TransportError):
    """A reused connection closed before any byte of the response: the server dropped it idle."""


class _HeadersOnly(Exception):
    """Raised inside the parser to end a HEAD response at its headers."""


class Exchange:
    """What came back on one exchange: status, header pairs, body, and whether the connection is reusable."""

    __slots__ = ("body", "headers", "reusable", "status")

    def __init__(self, status: int, headers: Headers, body: bytes, reusable: bool) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.reusable = reusable


class H1Connection(asyncio.Protocol):
    """A keep-alive connection to one endpoint; `exchange()` writes a request and awaits its answer."""

    __slots__ = ("_chunks", "_deadlines", "_head_only", "_headers", "_headers_done", "_loop", "_max_body",
                 "_parser", "_raised", "_size", "_status", "_waiter", "_watching", "closed", "got_bytes",
                 "idle_since", "label", "poisoned", "transport", "uses")  # fmt: skip

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        label: str,
        max_body: int | None,
        deadlines: ExchangeDeadlines | None = None,
    ) -> None:
        self._loop = loop
        self._deadlines = deadlines or ExchangeDeadlines(loop)  # the transport's, shared by its connections
        self._watching = self._deadlines.due  # where an exchange with a timeout waits: left when it ends
        self.label = label  # the instance id errors name
        self._max_body = max_body
        self._parser = HttpResponseParser(self)
        self._waiter: asyncio.Future[Exchange] | None = None
        self._headers: Headers = []
        self._chunks: list[bytes] = []
        self._size = 0
        self._headers_done = False
        self._head_only = False
        self._status = 0
        self._raised: BaseException | None = None  # what a parser callback raised
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.poisoned = False
        self.got_bytes = False
        self.uses = 0  # exchanges completed
        self.idle_since = 0.0

    # -- driving an exchange -------------------------------------------------------------

    def exchange(
        self, data: bytes, tail: bytes | None, head_only: bool, timeout: float | None
    ) -> asyncio.Future[Exchange]:
        """Write `data` (and a large body in `tail`) and return the future of the answer."""
        transport = self.transport
        assert transport is not None and self._waiter is None
        waiter = self._waiter = self._loop.create_future()
        self._headers, self._chunks, self._size = [], [], 0
        self._headers_done = self.got_bytes = False
        self._head_only = head_only
        if timeout is not None:
            self._deadlines.watch(self, timeout)
        transport.write(data)
        if tail is not None:
            transport.write(tail)
        return waiter

    def usable(self) -> bool:
        return not (self.closed or self.poisoned) and self.transport is not None

    def close(self) -> None:
        if self._waiter is not None:  # mid-exchange: nothing in flight can be kept
            self.abort()
            return
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Drop the connection now (mid-exchange: what is in flight cannot be resynchronised)."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def _finish(self, result: Exchange | BaseException) -> None:
        waiter, self._waiter = self._waiter, None
        self._watching.pop(self, None)
        if waiter is None or waiter.done():
            return
        if isinstance(result, Exchange):
            waiter.set_result(result)
        else:
            waiter.set_exception(result)

    def _fail(self, exc: BaseException) -> None:
        self._finish(exc)
        self.abort()

    def time_out(self) -> None:
        """The exchange's deadline passed (called by `ExchangeDeadlines`)."""
        self._fail(RequestTimeout(f"{self.label} did not answer in time", self.label))

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass of it

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:  # bytes nobody asked for: the framing is lost
            self.poisoned = True
            self.abort()
            return
        self.got_bytes = True
        try:
            self._parser.feed_data(data)
        except HttpParserCallbackError as exc:
            cause, self._raised = self._raised or exc.__context__, None  # see _stop
            if isinstance(cause, _HeadersOnly):
                self._parser = HttpResponseParser(self)  # llhttp still expects a body: start afresh
                self._complete(reusable=data.endswith(b"\r\n\r\n"))
            elif isinstance(cause, TransportError):
                self._fail(cause)
            else:
                self._fail(ConnectionReset(f"{self.label}: bad response: {cause or exc}", self.label))
        except HttpParserError as exc:
            self._fail(ConnectionReset(f"{self.label}: malformed response: {exc}", self.label))

    def eof_received(self) -> bool | None:
        self._closed_by_peer(None)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed_by_peer(exc)
        self.transport = None

    def _closed_by_peer(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is None:
            return
        if self._headers_done and not self._head_only and not self._framed():
            self._complete(reusable=False)  # the body was "until the connection closes"
        elif self.uses and not self.got_bytes:
            self._finish(StaleConnection(f"{self.label}: pooled connection closed by the server", self.label))
        else:
            why = f": {exc}" if exc else ""
            self._finish(ConnectionReset(f"{self.label}: connection closed mid-response{why}", self.label))

    # -- httptools callbacks -------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._waiter is None:
            self.poisoned = True  # a second message behind the one answered

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._headers_done:
            return  # trailer fields of a chunked body: not forwarded
        try:  # strict UTF-8 first: the same text when it succeeds, at a fraction of the cost
            self._headers.append((name.decode(), value.decode()))
        except UnicodeDecodeError:
            self._headers.append(
                (name.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape"))
            )

    def _framed(self) -> bool:
        """Content-Length or chunked: the parser knew where the body ends (asked only at EOF)."""
        return any(name.lower() in _FRAMING for name, _ in self._headers)

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:
            return  # 1xx: headers of an interim answer, dropped at its end
        self._headers_done = True
        self._status = status
        if self._head_only:
            raise self._stop(_HeadersOnly())
        if self._max_body is not None:
            for name, value in self._headers:
                length = name.lower() == "content-length" and value.isdigit()
                if length and int(value) > self._max_body:
                    raise self._stop(self._too_large())

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._max_body is not None and self._size > self._max_body:
            raise self._stop(self._too_large())
        self._chunks.append(body)

    def on_message_complete(self) -> None:
        if not self._headers_done:
            status = self._parser.get_status_code()
            if status == 101:
                raise self._stop(
                    ConnectionReset(f"{self.label}: unrequested protocol upgrade (101)", self.label)
                )
            self._headers = []  # a 1xx interim answer is over; the final one follows
            return
        if self._waiter is not None:
            self._complete(reusable=self._parser.should_keep_alive())

    def _complete(self, reusable: bool) -> None:
        chunks = self._chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.uses += 1
        self._finish(Exchange(self._status, self._headers, body, reusable))

    def _stop(self, exc: BaseException) -> BaseException:
        """`exc`, kept for `data_received`: a callback's exception reaches it wrapped by httptools, and
        the wrapper's `__context__` link is overwritten if it is raised while another is handled."""
        self._raised = exc
        return exc

    def _too_large(self) -> ConnectionReset:
        return ConnectionReset(f"response body over {self._max_body} bytes", self.label)
