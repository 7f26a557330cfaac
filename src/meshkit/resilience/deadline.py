"""Deadlines: one time limit for a whole call, retries and backoff included, that travels downstream.

Client side, `DeadlineLayer` turns `request.timeout` (or the default) into an absolute
`request.deadline`, never later than the deadline this task inherited, and bounds the
whole call by it. The transport sends the time left in `X-Meshkit-Deadline-Ms` (relative
milliseconds, so hosts' clocks need not agree; gRPC's `grpc-timeout` works the same way).

Server side, `deadline_middleware` (aiohttp) or `DeadlineMiddleware` (ASGI) reads that
header into a context variable; a handler that calls on through a meshkit client inherits
the deadline, so hop two gives up when hop one's caller has stopped waiting. A header that
does not parse is ignored: a bad deadline from a peer must never fail a request.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from meshkit.clock import SYSTEM_CLOCK, Clock, SystemClock
from meshkit.errors import DeadlineExceeded
from meshkit.service import Service
from meshkit.transport.base import DEADLINE_HEADER
from meshkit.types import Request, Response

_INHERITED: ContextVar[float | None] = ContextVar("meshkit_deadline", default=None)
_DECIMAL = frozenset("0123456789.")
_MAX_MS = 1e12  # about 31 years; anything longer is garbage, not a deadline


def current_deadline() -> float | None:
    """The deadline this task inherited (monotonic seconds), or None."""
    return _INHERITED.get()


@contextmanager
def deadline_scope(deadline: float | None) -> Iterator[None]:
    """Run a block as if its caller had sent `deadline` (for servers that are not HTTP)."""
    token = _INHERITED.set(deadline)
    try:
        yield
    finally:
        _INHERITED.reset(token)


def _check_timeout(name: str, value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ValueError(f"{name}: must be a finite number of seconds > 0, or None, got {value!r}")


def parse_deadline_ms(raw: str | bytes | None) -> float | None:
    """Seconds left from a header value (plain decimal milliseconds), or None when missing or not sane."""
    if raw is None:
        return None
    text = (raw.decode("latin-1") if isinstance(raw, bytes) else raw).strip()
    if not text or not _DECIMAL.issuperset(text):  # no signs, exponents, nan, inf or non-ASCII digits
        return None
    try:
        ms = float(text)
    except ValueError:  # "." or "1.2.3"
        return None
    return ms / 1000.0 if ms <= _MAX_MS else None


def deadline_from_headers(headers: Mapping[str, str], clock: Clock = SYSTEM_CLOCK) -> float | None:
    """The absolute deadline (on `clock`) a caller sent, or None."""
    seconds = parse_deadline_ms(headers.get(DEADLINE_HEADER))
    return None if seconds is None else clock.monotonic() + seconds


class DeadlineLayer:
    """Sets `request.deadline` and fails the call with `DeadlineExceeded` once it passes.

    On the system clock the layer only stamps the deadline (gRPC and Finagle do the same):
    the transport bounds each attempt by the time left and the retry layer starts no
    backoff that would pass it, so the call cannot outlive it, and no second timer is
    armed per call (measured: an extra `asyncio.timeout` cost 30-50 us per request under
    load, a third of the client's whole overhead). `hard_bound=True` adds that timer, for
    stacks with user layers that may block. With any other clock (a `FakeClock` in tests)
    a watcher task sleeps on that clock.
    """

    __slots__ = ("_on_loop_time", "clock", "default_timeout", "hard_bound", "inner")

    def __init__(
        self,
        inner: Service,
        *,
        default_timeout: float | None = 30.0,
        clock: Clock = SYSTEM_CLOCK,
        hard_bound: bool = False,
    ) -> None:
        _check_timeout("default_timeout", default_timeout)
        self.inner = inner
        self.default_timeout = default_timeout
        self.clock = clock
        self.hard_bound = hard_bound
        self._on_loop_time = isinstance(clock, SystemClock)

    async def __call__(self, request: Request) -> Response:
        now = self.clock.monotonic()
        timeout = request.timeout
        if timeout is None:
            timeout = self.default_timeout
        else:
            _check_timeout("timeout", timeout)
        deadline = request.deadline
        if timeout is not None and (deadline is None or now + timeout < deadline):
            deadline = now + timeout
        inherited = _INHERITED.get()
        if inherited is not None and (deadline is None or inherited < deadline):
            deadline = inherited
        if deadline is None:
            return await self.inner(request)
        request.deadline = deadline
        if deadline <= now:
            raise DeadlineExceeded(f"deadline passed before calling {request.service!r}")
        if not self._on_loop_time:
            return await self._bounded_by_clock(request, deadline - now)
        if self.hard_bound:
            return await self._bounded_by_loop(request, deadline - now)
        try:
            return await self.inner(request)
        except TimeoutError as exc:  # an attempt that ran out of the time left
            raise self._exceeded(request, exc, False) from exc

    async def _bounded_by_loop(self, request: Request, remaining: float) -> Response:
        bound = asyncio.timeout(remaining)
        try:
            async with bound:
                return await self.inner(request)
        except TimeoutError as exc:
            raise self._exceeded(request, exc, bound.expired()) from exc

    async def _bounded_by_clock(self, request: Request, remaining: float) -> Response:
        task = asyncio.current_task()
        assert task is not None
        fired = False

        async def watch() -> None:
            nonlocal fired
            await self.clock.sleep(remaining)
            fired = True
            task.cancel()

        watcher = asyncio.get_running_loop().create_task(watch())
        try:
            return await self.inner(request)
        except asyncio.CancelledError:
            if not fired:
                raise
            task.uncancel()
            raise DeadlineExceeded(f"deadline exceeded calling {request.service!r}") from None
        except TimeoutError as exc:
            raise self._exceeded(request, exc, False) from exc
        finally:
            watcher.cancel()

    def _exceeded(self, request: Request, exc: TimeoutError, expired: bool) -> BaseException:
        """Our own bound, or an attempt timing out at the deadline, is `DeadlineExceeded`."""
        if isinstance(exc, DeadlineExceeded):
            return exc
        deadline = request.deadline
        if expired or (deadline is not None and self.clock.monotonic() >= deadline):
            return DeadlineExceeded(f"deadline exceeded calling {request.service!r}")
        return exc


@web.middleware
async def deadline_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp middleware: the handler (and any meshkit call it makes) inherits the caller's deadline."""
    deadline = deadline_from_headers(request.headers)
    if deadline is None:
        return await handler(request)
    token = _INHERITED.set(deadline)
    try:
        return await handler(request)
    finally:
        _INHERITED.reset(token)


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_HEADER_BYTES = DEADLINE_HEADER.lower().encode("latin-1")


class DeadlineMiddleware:
    """Pure ASGI middleware doing what `deadline_middleware` does, for FastAPI/Starlette apps."""

    __slots__ = ("app", "clock")

    def __init__(self, app: ASGIApp, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.app = app
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        seconds = None
        if scope["type"] == "http":
            for name, value in scope.get("headers", ()):
                if name == _HEADER_BYTES:
                    seconds = parse_deadline_ms(value)
                    break
        if seconds is None:
            await self.app(scope, receive, send)
            return
        token = _INHERITED.set(self.clock.monotonic() + seconds)
        try:
            await self.app(scope, receive, send)
        finally:
            _INHERITED.reset(token)
