"""Hop-by-hop and internal headers never cross a meshkit hop: 100% stripped, counted, at both doors.

A seeded generator sends requests whose headers mix ordinary ones with every hop-by-hop header
(RFC 9110 7.6.1), headers named by `Connection`, Host and Content-Length overrides, `X-Meshkit-*`
headers and the caller's own control-plane token, in random letter case, through `/call` of a
real `meshkit serve` and through a real `meshkit proxy` process. The instance records what
arrives; every forbidden header that arrives is a failure, and the ordinary ones must arrive.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import StartUpstream
from tests.security.conftest import Figures, ProxyProcess, register
from tests.support.plane import API, PlaneProcess

REQUESTS = 200
HOP_BY_HOP = [
    "Keep-Alive",
    "Proxy-Authorization",
    "Proxy-Authenticate",
    "Proxy-Connection",
    "TE",
    "Trailer",
    "Upgrade",
]
INJECTED_DEADLINE = "987654321"
UPSTREAM_HOP_BY_HOP = {
    "Connection": "X-Up-Private",
    "X-Up-Private": "1",
    "Keep-Alive": "timeout=5",
    "Proxy-Authenticate": "Basic",
    "Trailer": "X-T",
}


def random_case(rng: random.Random, name: str) -> str:
    return "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in name)


def hostile_headers(
    rng: random.Random, i: int, token: str | None
) -> tuple[list[tuple[str, str]], set[str], set[str]]:
    """(headers to send, lower-case names that must not arrive, names that must arrive)."""
    named = [f"X-Hop-{i}-{k}" for k in range(rng.randint(1, 3))]
    sent = [(random_case(rng, h), "v") for h in rng.sample(HOP_BY_HOP, rng.randint(2, len(HOP_BY_HOP)))]
    sent += [(n, "secret") for n in named]
    sent.append(
        (random_case(rng, "Connection"), ", ".join([*named, rng.choice(["keep-alive", "close", "x"])]))
    )
    sent.append((random_case(rng, "X-Meshkit-Internal"), "1"))
    sent.append((random_case(rng, "X-Meshkit-Deadline-Ms"), INJECTED_DEADLINE))
    if token is not None:
        sent.append(("X-Forward-Token", f"Bearer {token}"))
    kept = [(f"X-Keep-{i}", str(rng.random())), ("X-Request-Id", f"req-{i}")]
    sent += kept
    rng.shuffle(sent)
    forbidden = {n.lower() for n, _ in sent if not n.lower().startswith(("x-keep", "x-request-id"))}
    return sent, forbidden, {n.lower() for n, _ in kept}


def leaks(seen: list[tuple[str, str]], forbidden: set[str]) -> list[str]:
    """Forbidden headers that arrived; the mesh's own deadline header may, with its own value."""
    out = []
    for name, value in seen:
        low = name.lower()
        if low == "x-meshkit-deadline-ms":
            if value == INJECTED_DEADLINE or sum(n.lower() == low for n, _ in seen) != 1:
                out.append(f"{name}: {value}")
        elif low in forbidden:
            out.append(f"{name}: {value}")
    return out


@pytest.fixture
async def recorder(upstreams: StartUpstream, plane: PlaneProcess) -> tuple[list[list[tuple[str, str]]], str]:
    seen: list[list[tuple[str, str]]] = []

    async def record(request: web.Request) -> web.StreamResponse:
        if request.path != "/health":
            seen.append(list(request.headers.items()))
        return web.Response(text="ok", headers=UPSTREAM_HOP_BY_HOP)

    up = await upstreams("hdr", record)
    name = f"hdr-{up.port}"
    async with aiohttp.ClientSession() as session:
        await register(session, plane, name, up.port)
    return seen, name


async def run_door(
    send: Callable[[aiohttp.ClientSession, list[tuple[str, str]]], object],
    seen: list[list[tuple[str, str]]],
    token: str | None,
) -> tuple[int, int, list[str]]:
    rng = random.Random(20240601)
    leaked: list[str] = []
    forbidden_sent = 0
    async with aiohttp.ClientSession() as session:
        for i in range(REQUESTS):
            headers, forbidden, kept = hostile_headers(rng, i, token)
            forbidden_sent += len(forbidden)
            await send(session, headers)  # type: ignore[misc]
            arrived = seen[-1]
            assert len(seen) == i + 1
            assert kept <= {n.lower() for n, _ in arrived}, (headers, arrived)
            leaked += leaks(arrived, forbidden)
    return len(seen), forbidden_sent, leaked


async def test_call_strips_every_hop_by_hop_and_internal_header(
    plane: PlaneProcess, recorder: tuple[list[list[tuple[str, str]]], str], figures: Figures
) -> None:
    seen, name = recorder

    async def send(session: aiohttp.ClientSession, headers: list[tuple[str, str]]) -> None:
        body = {"service_name": name, "path": "/h", "headers": dict(headers), "retry_count": 0}
        auth = {"Authorization": f"Bearer {plane.token}"}
        async with session.post(f"{plane.url}{API}/call", json=body, headers=auth) as resp:
            assert resp.status == 200, await resp.text()

    forwarded, forbidden, leaked = await run_door(send, seen, plane.token)
    figures(
        "security/headers_call",
        {
            "requests": forwarded,
            "forbidden_sent": forbidden,
            "leaked": len(leaked),
            "stripped_pct": 100.0 * (forbidden - len(leaked)) / forbidden,
        },
    )
    assert leaked == []


async def test_proxy_strips_every_hop_by_hop_header_both_ways(
    proxy: ProxyProcess, recorder: tuple[list[list[tuple[str, str]]], str], figures: Figures
) -> None:
    seen, name = recorder

    async def send(session: aiohttp.ClientSession, headers: list[tuple[str, str]]) -> None:
        async with session.get(
            f"{proxy.url}/{name}/h", headers=headers, skip_auto_headers=["Accept-Encoding"]
        ) as resp:
            assert resp.status == 200, await resp.text()
            back = {k.lower() for k in resp.headers}
            assert not back & {"x-up-private", "keep-alive", "proxy-authenticate", "trailer"}, resp.headers

    forwarded, forbidden, leaked = await run_door(send, seen, None)
    figures(
        "security/headers_proxy",
        {
            "requests": forwarded,
            "forbidden_sent": forbidden,
            "leaked": len(leaked),
            "stripped_pct": 100.0 * (forbidden - len(leaked)) / forbidden,
        },
    )
    assert leaked == []
