"""Metric series stay under a fixed cap whatever names and paths callers send: a real `meshkit serve`
takes random `/call`s (made-up service names, valid and not, and random paths to the one real
service) from 64 keep-alive connections, and its /metrics is scraped before and after.

The cap follows from `meshkit.observe.metrics`: label values come only from registered services
(anything else is "other"), 8 methods, 6 status classes and fixed outcome kinds, so the count
depends on what is registered, never on what is sent. 10,000 requests in the default suite,
100,000 under `make soak`.
"""

from __future__ import annotations

import asyncio
import random
import string
import time

import aiohttp
import pytest

from tests.conftest import StartUpstream
from tests.security.conftest import Figures, register
from tests.support.plane import API, PlaneProcess

CAP = 400  # series in the whole exposition, with the two services registered here
CONNECTIONS = 64
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "BREW", "get"]


def series(text: str) -> set[str]:
    """Every sample line's name and labels (the value dropped)."""
    return {line.rsplit(" ", 1)[0] for line in text.splitlines() if line and not line.startswith("#")}


def random_call(rng: random.Random, real: str) -> dict[str, object]:
    segment = "".join(rng.choices(string.ascii_lowercase + string.digits + "-_.%~", k=rng.randint(1, 24)))
    path = f"/{segment}/{rng.randint(0, 10**9)}?q={rng.random()}"
    roll = rng.random()
    if roll < 0.4:
        name = real  # a real service, random paths: answered 200 (or 400 for an unsafe path)
    elif roll < 0.8:
        name = "".join(rng.choices(string.ascii_lowercase + "-", k=rng.randint(1, 64)))  # valid, unknown: 503
    else:
        name = "".join(rng.choices(string.printable, k=rng.randint(0, 80)))  # invalid: 422
    return {"service_name": name, "method": rng.choice(METHODS), "path": path, "retry_count": 0, "timeout": 5}


async def scrape(session: aiohttp.ClientSession, plane: PlaneProcess) -> set[str]:
    async with session.get(
        f"{plane.url}/metrics", headers={"Authorization": f"Bearer {plane.token}"}
    ) as resp:
        assert resp.status == 200
        return series(await resp.text())


async def run(plane: PlaneProcess, upstreams: StartUpstream, figures: Figures, total: int) -> None:
    up = await upstreams("card")
    real = f"card-{up.port}"
    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector) as session:
        await register(session, plane, real, up.port)
        before = await scrape(session, plane)
        rng = random.Random(7)
        bodies = iter([random_call(rng, real) for _ in range(total)])
        statuses: dict[int, int] = {}
        auth = {"Authorization": f"Bearer {plane.token}"}

        async def worker() -> None:
            for body in bodies:  # shared iterator: the loop ends when every request is sent
                async with session.post(f"{plane.url}{API}/call", json=body, headers=auth) as resp:
                    await resp.read()
                    statuses[resp.status] = statuses.get(resp.status, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
        elapsed = time.perf_counter() - started
        after = await scrape(session, plane)
    mesh_after = {s for s in after if s.startswith("mesh_")}
    figures(
        f"security/metric_series[{total}]",
        {"requests": sum(statuses.values()), "seconds": round(elapsed, 1), "rps": round(total / elapsed),
         "series_before": len(before), "series_after": len(after), "mesh_series_after": len(mesh_after),
         "cap": CAP, "statuses": dict(sorted(statuses.items()))},
    )  # fmt: skip
    assert sum(statuses.values()) == total
    assert statuses.get(500, 0) == 0 and set(statuses) <= {200, 400, 422, 503}
    assert len(after) <= CAP
    labels = " ".join(mesh_after)
    assert real in labels and 'service="other"' in labels  # both kinds of name were counted...
    assert (
        len({s for s in mesh_after if "service=" in s and real not in s and 'service="other"' not in s}) == 0
    )


async def test_series_capped_after_10000_random_calls(
    plane: PlaneProcess, upstreams: StartUpstream, figures: Figures
) -> None:
    await run(plane, upstreams, figures, 10_000)


@pytest.mark.soak
@pytest.mark.timeout(900)
async def test_series_capped_after_100000_random_calls(
    plane: PlaneProcess, upstreams: StartUpstream, figures: Figures
) -> None:
    await run(plane, upstreams, figures, 100_000)
