"""The /call fast lane answers exactly as the FastAPI route does.

One plane is served twice by uvicorn on 127.0.0.1: `create_app(plane)` (the fast lane first)
and `create_app(plane, fast_call=False)` (the route alone). The same raw HTTP requests go
to both, and the answers must match: status, JSON and headers (but Date), for bad inputs
of every kind, bad tokens, oversized and badly framed bodies, and the plane's own errors.
Good calls must have the same shape, count in the metrics and leave their trace in the
collector. A test that checks the fast lane really served (not the route) guards the rest.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from meshkit.plane.api import V2_PREFIX, create_app
from meshkit.plane.api.fastcall import call_fields
from meshkit.plane.plane import ControlPlane
from tests.conftest import StartUpstream
from tests.support.asgi import start_uvicorn, stop_uvicorn

ADMIN = "admin-token-for-tests-0123456789"
CALL = f"{V2_PREFIX}/call"
MAX_BODY = 16384  # the app's cap on the HTTP body
MAX_FORWARDED = 1000  # the plane's cap on the body /call forwards


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def comparable(self) -> tuple[int, list[tuple[str, str]], Any]:
        kept = [(k, v) for k, v in self.headers if k not in ("date", "server")]
        try:
            body: Any = self.json()
        except ValueError:
            body = self.body
        return self.status, kept, body


async def exchange(port: int, data: bytes) -> Answer:
    """Send raw bytes, read one HTTP/1.1 answer (Content-Length framed)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = [
            (k.strip().lower(), v.strip()) for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)
        ]
        length = int(dict(headers).get("content-length", "0"))
        body = await reader.readexactly(length)
    finally:
        writer.close()
    return Answer(status, headers, body)


def post(
    body: bytes, *, token: str | None = ADMIN, ctype: str | None = "application/json", extra: str = ""
) -> bytes:
    head = f"POST {CALL} HTTP/1.1\r\nHost: plane\r\nContent-Length: {len(body)}\r\n"
    if token is not None:
        head += f"Authorization: Bearer {token}\r\n"
    if ctype is not None:
        head += f"Content-Type: {ctype}\r\n"
    return (head + extra + "\r\n").encode("latin-1") + body


def post_json(value: Any, **kwargs: Any) -> bytes:
    return post(json.dumps(value).encode(), **kwargs)


@dataclass
class Pair:
    plane: ControlPlane
    fast: int
    route: int
    upstream_port: int

    async def both(self, data: bytes) -> tuple[Answer, Answer]:
        return await exchange(self.fast, data), await exchange(self.route, data)


@pytest.fixture
async def pair(tmp_path: Path, upstreams: StartUpstream) -> AsyncIterator[Pair]:
    async def handle(request: web.Request) -> web.StreamResponse:
        if request.path == "/fail":
            return web.Response(status=502, text="bad gateway")
        return web.json_response({"path": request.path_qs, "got": (await request.read()).decode()})

    up = await upstreams("echo", handle)
    plane = ControlPlane(
        data_dir=tmp_path / "data", admin_token=ADMIN, health_checks=False, max_body_bytes=MAX_FORWARDED
    )
    fast_server, fast_task, fast = await start_uvicorn(
        create_app(plane, max_body_bytes=MAX_BODY), lifespan="on"
    )
    route_server, route_task, route = await start_uvicorn(
        create_app(plane, max_body_bytes=MAX_BODY, fast_call=False), lifespan="off"
    )
    reply = await exchange(
        fast,
        post_json(
            {"service_name": "echo", "address": "127.0.0.1", "port": up.port},
        ).replace(CALL.encode(), f"{V2_PREFIX}/register".encode()),
    )
    assert reply.status == 200, reply
    try:
        yield Pair(plane, fast, route, up.port)
    finally:
        await stop_uvicorn(route_server, route_task)
        await stop_uvicorn(fast_server, fast_task)


BAD_TOKENS = [None, "wrong-token", "", f"{ADMIN} extra"]
BAD_BODIES: list[bytes] = [
    b"",
    b"{",
    b"[]",
    b'"echo"',
    b"null",
    b"{}",
    b'{"service_name": "Bad_Name"}',
    b'{"service_name": "echo\\n"}',
    b'{"service_name": "' + b"a" * 65 + b'"}',
    b'{"service_name": ""}',
    b'{"service_name": 7}',
    b'{"service_name": "echo", "surprise": 1}',
    b'{"service_name": "echo", "timeout": 0.5}',
    b'{"service_name": "echo", "timeout": 301}',
    b'{"service_name": "echo", "timeout": "30"}',
    b'{"service_name": "echo", "timeout": true}',
    b'{"service_name": "echo", "timeout": null}',
    b'{"service_name": "echo", "timeout": NaN}',
    b'{"service_name": "echo", "timeout": 1e400}',
    b'{"service_name": "echo", "retry_count": 11}',
    b'{"service_name": "echo", "retry_count": -1}',
    b'{"service_name": "echo", "retry_count": 2.0}',
    b'{"service_name": "echo", "retry_count": false}',
    b'{"service_name": "echo", "headers": []}',
    b'{"service_name": "echo", "headers": null}',
    b'{"service_name": "echo", "headers": {"X-A": 1}}',
    b'{"service_name": "echo", "headers": {"Host": "evil"}}',
    b'{"service_name": "echo", "headers": {"X-A": "a\\r\\nX-B: b"}}',
    b'{"service_name": "echo", "method": "FOO"}',
    b'{"service_name": "echo", "method": ""}',
    b'{"service_name": "echo", "method": "' + b"G" * 17 + b'"}',
    b'{"service_name": "echo", "method": null}',
    b'{"service_name": "echo", "path": ""}',
    b'{"service_name": "echo", "path": "/../etc/passwd"}',
    b'{"service_name": "echo", "path": "//evil.example/"}',
    b'{"service_name": "echo", "path": "/' + b"p" * 8192 + b'"}',
    b'{"service_name": "echo", "body": ' + b"[" * 70 + b"]" * 70 + b"}",
    b'{"service_name": "echo", "body": "\\ud800"}',
    b'{"service_name": "echo\\ud800"}',
    b'{"service_name": "nobody-here"}',
    b'{"service_name": "echo", "service_name": "Bad"}',
    b'{"service_name": "echo"} trailing',
    b"\xff\xfe{}",
]


async def test_bad_tokens_get_the_routes_answer(pair: Pair) -> None:
    for token in BAD_TOKENS:
        fast, route = await pair.both(post_json({"service_name": "echo"}, token=token))
        assert fast.status == 401, (token, fast)
        assert fast.comparable() == route.comparable(), token
    fast, route = await pair.both(post(b"{", token=None))  # bad JSON and no token: whichever the route says
    assert fast.comparable() == route.comparable()


def same(fast: Answer, route: Answer) -> bool:
    """Equal answers; for a 200 (lax input the route accepts, e.g. "timeout": "30"), equal shapes."""
    if fast.status == route.status == 200:
        return _shape(fast) == _shape(route)
    return fast.comparable() == route.comparable()


async def test_bad_bodies_get_the_routes_answer(pair: Pair) -> None:
    refused = 0
    for body in BAD_BODIES:
        fast, route = await pair.both(post(body))
        assert same(fast, route), (body[:80], fast, route)
        refused += fast.status >= 400
    assert refused == len(BAD_BODIES) - 5  # all but pydantic's lax spellings and a dropped Host


async def test_content_types_get_the_routes_answer(pair: Pair) -> None:
    ctypes = [
        None,
        "text/plain",
        "application/vnd.api+json",
        "application/json; charset=utf-8",
        "APPLICATION/JSON",
    ]
    for ctype in ctypes:
        for service in ("nobody-here", "echo"):
            fast, route = await pair.both(post_json({"service_name": service}, ctype=ctype))
            assert same(fast, route), (ctype, fast, route)


async def test_body_over_the_cap_is_413_both_ways(pair: Pair) -> None:
    big = json.dumps({"service_name": "echo", "body": "x" * MAX_BODY}).encode()
    fast, route = await pair.both(post(big))
    assert fast.status == 413 and fast.comparable() == route.comparable()
    chunked = (
        (
            f"POST {CALL} HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer {ADMIN}\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n"
        ).encode()
        + b"".join(b"%x\r\n%s\r\n" % (1000, b"x" * 1000) for _ in range(20))
        + b"0\r\n\r\n"
    )
    fast, route = await pair.both(chunked)
    assert fast.status == 413 and fast.comparable() == route.comparable()


async def test_bad_framing_is_400_and_closes_both_ways(pair: Pair) -> None:
    data = (
        f"POST {CALL} HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer {ADMIN}\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"
    ).encode()
    fast, route = await pair.both(data)
    assert fast.status == 400 and ("connection", "close") in fast.headers
    assert fast.comparable() == route.comparable()


async def test_plane_errors_get_the_routes_answer(pair: Pair) -> None:
    """No instance (503), an unknown method (422), hostile headers and paths (400), a body over
    what the plane forwards (413)."""
    for body in (
        {"service_name": "nobody-here"},
        {"service_name": "echo", "method": "BREW"},
        {"service_name": "echo", "headers": {"X-A": "a\r\nX-B: b"}},
        {"service_name": "echo", "path": "/a/%2e%2e/b"},
        {"service_name": "echo", "body": "x" * (MAX_FORWARDED + 1), "retry_count": 0},
    ):
        fast, route = await pair.both(post_json(body))
        assert fast.status >= 400, (body, fast)
        assert fast.comparable() == route.comparable(), body
    assert (await exchange(pair.fast, post_json({"service_name": "nobody-here"}))).status == 503


def _shape(answer: Answer) -> dict[str, Any]:
    got = answer.json()
    assert isinstance(got.pop("trace_id"), str) and isinstance(got.pop("duration"), float)
    got["headers"].pop("Date", None)
    return dict(got)


async def test_good_calls_have_the_same_answer(pair: Pair) -> None:
    calls: list[dict[str, Any]] = [
        {"service_name": "echo"},
        {"service_name": "echo", "method": "post", "path": "/items?q=1", "body": {"a": [1, 2.5, None, "é"]}},
        {"service_name": "echo", "method": "PUT", "body": "plain text", "headers": {"X-Custom": "v"}},
        {"service_name": "echo", "path": "/fail", "retry_count": 0, "timeout": 5},
        {"service_name": "echo", "retry_count": None, "body": 18446744073709551615},
    ]
    for body in calls:
        fast, route = await pair.both(post_json(body))
        assert fast.status == route.status == 200, (body, fast, route)
        assert _shape(fast) == _shape(route), body
        assert [k for k, _ in fast.headers] == [k for k, _ in route.headers]
        assert ("content-type", "application/json") in fast.headers
    failed = (await exchange(pair.fast, post_json(calls[3]))).json()
    assert failed["status_code"] == 502 and failed["body"] == "bad gateway"  # a result, not an error


async def test_the_fast_lane_serves_good_calls(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    """Guards the comparisons above: a valid call must not reach the FastAPI route."""
    assert call_fields({"service_name": "echo"}) is not None
    routed: list[str] = []
    original = pair.plane.call

    async def spy(*args: Any, **kwargs: Any) -> Any:
        routed.append(type(kwargs["request_headers"]).__name__)
        return await original(*args, **kwargs)

    monkeypatch.setattr(pair.plane, "call", spy)
    assert (await exchange(pair.fast, post_json({"service_name": "echo"}))).status == 200
    assert (await exchange(pair.route, post_json({"service_name": "echo"}))).status == 200
    assert routed == ["dict", "Headers"]  # the fast lane passes a dict; the route, Starlette's Headers


async def test_calls_count_in_metrics_and_their_traces_are_collected(pair: Pair) -> None:
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    extra = f"traceparent: 00-{trace}-00f067aa0ba902b7-01\r\n"
    answer = await exchange(pair.fast, post_json({"service_name": "echo"}, extra=extra))
    assert answer.status == 200 and answer.json()["trace_id"] == trace
    metrics = await exchange(
        pair.fast, f"GET /metrics HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer {ADMIN}\r\n\r\n".encode()
    )
    line = next(
        ln
        for ln in metrics.body.decode().splitlines()
        if ln.startswith("mesh_requests_total") and '"echo"' in ln
    )
    assert float(line.rsplit(" ", 1)[1]) >= 1
    found = None
    for _ in range(100):
        pair.plane.tracer.force_flush()
        found = await pair.plane.collector.get_trace(trace)
        if found is not None:
            break
        await asyncio.sleep(0.05)
    assert found is not None and "call echo" in str(found)


async def test_keep_alive_and_pipelined_calls(pair: Pair) -> None:
    one = post_json({"service_name": "echo", "path": "/1"})
    two = post_json({"service_name": "echo", "path": "/2"})
    reader, writer = await asyncio.open_connection("127.0.0.1", pair.fast)
    try:
        writer.write(one + two)
        await writer.drain()
        bodies = []
        for _ in range(2):
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(
                next(
                    ln.split(b":")[1]
                    for ln in head.split(b"\r\n")
                    if ln.lower().startswith(b"content-length")
                )
            )
            bodies.append(json.loads(await reader.readexactly(length)))
    finally:
        writer.close()
    assert [b["body"]["path"] for b in bodies] == ["/1", "/2"]
