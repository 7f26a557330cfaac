"""Probes: one active check of one instance, an HTTP GET or a TCP connect.

A probe answers pass or fail with a short reason and how long it took, and never raises:
a refused connection, a timeout or a garbage answer are all just a failed check. HTTP
probes pass on 2xx by default (Envoy's and Consul's rule) and never follow redirects: a
302 from a health endpoint usually means a login page or a proxy answering for a dead
backend, so it is a failure, and the redirect target is never contacted.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Container
from dataclasses import dataclass

import aiohttp

from meshkit.clock import SYSTEM_CLOCK, Clock
from meshkit.types import HealthCheck, ServiceInstance

HEALTHY_STATUSES: Container[int] = range(200, 300)
USER_AGENT = "meshkit-health-check"


@dataclass(frozen=True, slots=True)
class ProbeResult:
    ok: bool
    detail: str
    duration: float  # seconds, on the probe's clock


Probe = Callable[[ServiceInstance, HealthCheck], Awaitable[ProbeResult]]


async def http_probe(
    session: aiohttp.ClientSession,
    instance: ServiceInstance,
    check: HealthCheck,
    *,
    accept: Container[int] = HEALTHY_STATUSES,
    clock: Clock = SYSTEM_CLOCK,
) -> ProbeResult:
    """GET `http://host:port{check.path}` within `check.timeout`; pass when the status is in `accept`."""
    started = clock.monotonic()
    url = f"{instance.url}{check.path}"
    try:
        async with session.get(
            url,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=check.timeout),
            headers={"User-Agent": USER_AGENT},
        ) as resp:
            await resp.content.read(4096)  # drain a little so the connection can be reused
            status = resp.status
            location = resp.headers.get("Location")
    except TimeoutError:
        return ProbeResult(False, f"timeout after {check.timeout:g}s", clock.monotonic() - started)
    except Exception as exc:  # a probe never raises: every error is a failed check
        return ProbeResult(False, _describe(exc), clock.monotonic() - started)
    duration = clock.monotonic() - started
    if status in accept:
        return ProbeResult(True, f"HTTP {status}", duration)
    if location is not None and 300 <= status < 400:
        return ProbeResult(False, f"HTTP {status} redirect to {location} (not followed)", duration)
    return ProbeResult(False, f"HTTP {status}", duration)


async def tcp_probe(
    instance: ServiceInstance, check: HealthCheck, *, clock: Clock = SYSTEM_CLOCK
) -> ProbeResult:
    """Open a TCP connection within `check.timeout`, then close it; pass when it opened."""
    started = clock.monotonic()
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(instance.address, instance.port), timeout=check.timeout
        )
    except TimeoutError:
        return ProbeResult(False, f"connect timeout after {check.timeout:g}s", clock.monotonic() - started)
    except Exception as exc:
        return ProbeResult(False, _describe(exc), clock.monotonic() - started)
    duration = clock.monotonic() - started
    writer.close()
    with contextlib.suppress(Exception):  # the peer may reset on close; the connect already succeeded
        await writer.wait_closed()
    return ProbeResult(True, f"connected to {instance.endpoint}", duration)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"connect failed: {exc.os_error}"
    return f"{type(exc).__name__}: {exc}"
