"""`H1Transport`: the mesh's HTTP/1.1 client on asyncio Protocols, for the sidecar's data path.

It keeps `AiohttpTransport`'s contract (see `meshkit.transport.aiohttp`): the attempt's time
comes from `request.deadline` and travels on in `X-Meshkit-Deadline-Ms`; `ConnectError`
when nothing was sent, `ConnectionReset` when the connection broke or the answer was
malformed or too large, `RequestTimeout` when time ran out; redirects are returned, never
followed. A pooled connection the server closed while it sat idle is the one failure
replayed here, on a fresh connection, and only when replaying is safe: the request is
idempotent or carries an `Idempotency-Key` (the rule of Go's net/http and aiohttp; a
POST that may have reached the server is never sent twice behind the caller's back).
`connect_guard(ip, port)` sees the address actually dialled, after resolution, and
refuses it by raising (the SSRF guard of `meshkit.plane.ssrf`, against DNS rebinding).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable

from multidict import CIMultiDict

from meshkit.clock import SYSTEM_CLOCK, Clock
from meshkit.errors import ConnectError, ConnectionReset, RequestTimeout, TransportError
from meshkit.resilience.retry import is_idempotent
from meshkit.transport.base import Transport
from meshkit.transport.h1.connection import Exchange, H1Connection, StaleConnection
from meshkit.transport.h1.deadlines import ExchangeDeadlines
from meshkit.transport.h1.head import body_after_head, encode_request
from meshkit.transport.h1.pool import EndpointPool
from meshkit.types import Request, Response, ServiceInstance

ConnectGuard = Callable[[str, int], None]


def _count(name: str, value: int, minimum: int, meaning: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}: must be an integer >= {minimum}{meaning}, got {value!r}")


class H1Transport(Transport):
    """HTTP/1.1 over pooled keep-alive connections, parsed by httptools."""

    def __init__(
        self,
        *,
        limit_per_endpoint: int = 1000,
        max_idle_per_endpoint: int = 100,
        keepalive_timeout: float = 30.0,
        connect_timeout: float | None = 5.0,
        max_response_bytes: int | None = None,
        connect_guard: ConnectGuard | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        _count("limit_per_endpoint", limit_per_endpoint, 0, " (0 means unlimited)")
        _count("max_idle_per_endpoint", max_idle_per_endpoint, 0)
        if (
            isinstance(keepalive_timeout, bool)
            or not isinstance(keepalive_timeout, int | float)
            or keepalive_timeout <= 0
        ):
            raise ValueError(f"keepalive_timeout: must be a number of seconds > 0, got {keepalive_timeout!r}")
        if connect_timeout is not None and connect_timeout <= 0:
            raise ValueError(f"connect_timeout: must be > 0 or None, got {connect_timeout!r}")
        if max_response_bytes is not None:
            _count("max_response_bytes", max_response_bytes, 0, " or None")
        self._limit = limit_per_endpoint
        self._max_idle = max_idle_per_endpoint
        self._keepalive = float(keepalive_timeout)
        self._connect_timeout = connect_timeout
        self._max_response_bytes = max_response_bytes
        self._guard = connect_guard
        self._clock = clock
        self._pools: dict[str, EndpointPool] = {}
        self._deadlines: ExchangeDeadlines | None = None  # one timer for every exchange, made on the loop

    async def __call__(self, request: Request) -> Response:
        instance = request.instance
        if instance is None:
            raise TransportError("no instance chosen for the request (is a balancer in the stack?)")
        deadline = request.deadline
        deadline_ms = None
        if deadline is not None:
            remaining = deadline - self._clock.monotonic()
            if remaining <= 0:
                raise RequestTimeout("deadline passed before the attempt started", instance.id)
            # written into the head: the caller's headers stay as they are
            deadline_ms = int(remaining * 1000)
        endpoint = instance.endpoint
        body = request.body
        data = encode_request(request.method, request.path, endpoint, request.headers, body, deadline_ms)
        tail = body_after_head(body)
        head_only = request.method == "HEAD"
        pool = self._pools.get(endpoint) or self._new_pool(endpoint)
        conn = pool.take_idle() or await self._acquire(pool, instance, deadline)
        try:
            answer = await self._send(conn, data, tail, head_only, deadline)
        except StaleConnection as exc:
            conn.close()  # its slot is reused by the fresh connection, or freed below
            if not is_idempotent(request):
                pool.forget_slot()
                raise ConnectionReset(
                    f"{endpoint} closed a pooled connection without answering; {request.method} is not "
                    "idempotent, so it is not replayed",
                    instance.id,
                ) from exc
            conn = await self._connect(pool, instance, deadline)
            try:
                answer = await self._send(conn, data, tail, head_only, deadline)
            except BaseException:
                pool.discard(conn)
                raise
        except BaseException:
            pool.discard(conn)
            raise
        if answer.reusable:
            pool.release(conn)
        else:
            pool.discard(conn)
        return Response(answer.status, CIMultiDict(answer.headers), answer.body, instance)

    def _send(
        self, conn: H1Connection, data: bytes, tail: bytes | None, head_only: bool, deadline: float | None
    ) -> asyncio.Future[Exchange]:
        timeout = None
        if deadline is not None:
            timeout = deadline - self._clock.monotonic()
            if timeout <= 0:
                raise RequestTimeout(f"{conn.label}: deadline passed while connecting", conn.label)
        return conn.exchange(data, tail, head_only, timeout)

    def _new_pool(self, endpoint: str) -> EndpointPool:
        pool = EndpointPool(
            asyncio.get_running_loop(),
            limit=self._limit,
            max_idle=self._max_idle,
            keepalive_timeout=self._keepalive,
        )
        self._pools[endpoint] = pool
        return pool

    async def _acquire(
        self, pool: EndpointPool, instance: ServiceInstance, deadline: float | None
    ) -> H1Connection:
        """A connection for one exchange: a new one when under the limit, else the next released."""
        if pool.may_open():
            pool.open += 1
            return await self._connect(pool, instance, deadline)
        timeout = None if deadline is None else deadline - self._clock.monotonic()
        try:
            async with asyncio.timeout(timeout):
                conn = await pool.wait_turn()
        except TimeoutError as exc:
            raise RequestTimeout(f"no connection to {instance.endpoint} freed in time", instance.id) from exc
        return conn if conn is not None else await self._connect(pool, instance, deadline)

    async def _connect(
        self, pool: EndpointPool, instance: ServiceInstance, deadline: float | None
    ) -> H1Connection:
        """Open a connection in a slot already counted in `pool.open`; the slot is freed on failure."""
        loop = asyncio.get_running_loop()
        limit = self._connect_timeout
        if deadline is not None:
            remaining = deadline - self._clock.monotonic()
            limit = remaining if limit is None else min(limit, remaining)
        label, max_body = instance.id, self._max_response_bytes
        deadlines = self._deadlines
        if deadlines is None:
            deadlines = self._deadlines = ExchangeDeadlines(loop)
        try:
            async with asyncio.timeout(limit):
                host = await self._dial_address(loop, instance)
                _, conn = await loop.create_connection(
                    lambda: H1Connection(loop, label, max_body, deadlines), host, instance.port
                )
        except BaseException as exc:
            pool.forget_slot()
            if isinstance(exc, TimeoutError):
                raise RequestTimeout(f"connect to {instance.endpoint} timed out", label) from exc
            if isinstance(exc, OSError):
                raise ConnectError(f"connect to {instance.endpoint} failed: {exc}", label) from exc
            raise
        return conn

    async def _dial_address(self, loop: asyncio.AbstractEventLoop, instance: ServiceInstance) -> str:
        """The address to dial; with a guard, resolved here so the guard judges the IP itself."""
        host, port = instance.address, instance.port
        if self._guard is None:
            return host
        try:
            ips = [str(ipaddress.ip_address(host))]
        except ValueError:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            ips = [str(info[4][0]) for info in infos]
        for ip in ips:  # one unsafe answer refuses the name (a rebinding resolver may rotate)
            try:
                self._guard(ip, port)
            except Exception as exc:
                raise ConnectError(f"connect to {instance.endpoint} refused: {exc}", instance.id) from exc
        if not ips:
            raise ConnectError(f"{host!r} resolved to no address", instance.id)
        return ips[0]

    async def aclose(self) -> None:
        pools, self._pools = self._pools, {}
        for pool in pools.values():
            pool.close()
