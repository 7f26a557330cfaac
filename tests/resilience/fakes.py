"""Small stand-ins for the layers around resilience, so these tests need no balancer package."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from meshkit.clock import FakeClock
from meshkit.errors import NoHealthyInstances
from meshkit.service import Service
from meshkit.types import Request, Response, ServiceInstance

T = TypeVar("T")


def instances(*ports: int) -> list[ServiceInstance]:
    return [ServiceInstance(f"svc-127.0.0.1-{p}", "svc", "127.0.0.1", p) for p in ports]


class FirstAvailable:
    """A balancer: the first candidate not excluded (any candidate when all are, unless strict)."""

    def __init__(self, inner: Service, *, strict: bool = False) -> None:
        self.inner = inner
        self.strict = strict
        self.picks: list[str] = []

    async def __call__(self, request: Request) -> Response:
        fresh = [c for c in request.candidates if c.id not in request.excluded]
        if not fresh and (self.strict or not request.candidates):
            raise NoHealthyInstances(request.service)
        request.instance = (fresh or list(request.candidates))[0]
        self.picks.append(request.instance.id)
        return await self.inner(request)


async def drive(clock: FakeClock, call: Awaitable[T], step: float = 0.01) -> T:
    """Run `call` while moving the fake clock forward, as real time would."""
    task = asyncio.ensure_future(call)
    while not task.done():
        await clock.run_for(step, step=step)
    return task.result()
