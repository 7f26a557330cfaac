"""Shared tools for chaos, soak and security tests: load, killable upstreams, resource samples, figures.

- `open_loop(call, rate, duration)`: an open-loop load generator. Request i is started at
  `t0 + i / rate` whether or not earlier ones have finished (a closed loop would slow down
  with the system and hide the very stalls we look for; Gil Tene's "coordinated omission"),
  and its latency counts from that intended start. Bounded: it stops by itself.
- `UpstreamProcess`: `tests/chaos/upstream_app.py` in a subprocess on 127.0.0.1, so
  `kill()` is a real SIGKILL; `restart()` brings it back on the same port.
- `AttemptLog`: a layer put just above the transport that timestamps every attempt per
  instance; a dead process cannot count the traffic it no longer gets, the client can.
- `ResourceSampler`: RSS and open file descriptors of a process (from /proc), sampled
  periodically in the background.
- `report(name, figures, record_property)`: prints the figures, attaches them to the
  pytest report and appends them to `test-artifacts/chaos-figures.jsonl`, from which
  docs/reliability.md is transcribed.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import math
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from meshkit.client import MeshClient
from meshkit.service import Service
from meshkit.types import Request, Response
from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
FIGURES = ARTIFACTS / "chaos-figures.jsonl"
LOOPBACK = "127.0.0.1"

# -- figures ---------------------------------------------------------------------------------


def percentile(values: Iterable[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank; NaN for no values."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


def report(name: str, figures: dict[str, Any], record_property: Callable[[str, object], None]) -> None:
    """Print one summary line, attach each figure to the test report, append them to the JSONL file."""
    line = " ".join(f"{k}={_fmt(v)}" for k, v in figures.items())
    print(f"\n[figures] {name}: {line}")
    for key, value in figures.items():
        record_property(key, value)
    ARTIFACTS.mkdir(exist_ok=True)
    entry = {"test": name, "at": time.strftime("%Y-%m-%dT%H:%M:%S"), **figures}
    with FIGURES.open("a") as f:
        f.write(json.dumps(entry, default=str) + "\n")


def _fmt(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# -- open-loop load --------------------------------------------------------------------------


@dataclass(slots=True)
class Sample:
    at: float  # intended start, seconds since the load began
    latency: float  # seconds from the intended start to the end
    ok: bool
    detail: str  # the instance id that answered, or the error


@dataclass
class LoadResult:
    """Every sample (`keep=True`), or for long runs only counts and the latest `recent` latencies."""

    rate: float
    duration: float
    keep: bool = True
    samples: list[Sample] = field(default_factory=list)
    unfinished: int = 0  # calls still running when the drain timeout ended (counted as failures)
    succeeded: int = 0
    failures: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))

    def add(self, sample: Sample) -> None:
        if sample.ok:
            self.succeeded += 1
            self.recent.append(sample.latency)
        else:
            self.failures[sample.detail] += 1
        if self.keep:
            self.samples.append(sample)

    def between(self, start: float = 0.0, end: float = math.inf) -> list[Sample]:
        return [s for s in self.samples if start <= s.at < end]

    @property
    def sent(self) -> int:
        return self.succeeded + sum(self.failures.values()) + self.unfinished

    def success_ratio(self, start: float = 0.0, end: float = math.inf) -> float:
        if start == 0.0 and end == math.inf:
            return self.succeeded / self.sent if self.sent else math.nan
        chosen = self.between(start, end)
        total = len(chosen) + (self.unfinished if end == math.inf else 0)
        return sum(s.ok for s in chosen) / total if total else math.nan

    def p(self, q: float, start: float = 0.0, end: float = math.inf) -> float:
        """Latency percentile (seconds) of the successful calls started in [start, end)."""
        return percentile((s.latency for s in self.between(start, end) if s.ok), q)

    def errors(self) -> dict[str, int]:
        return dict(self.failures)


Call = Callable[[int], Awaitable[str]]  # request number -> a short description (instance id) or raise


async def open_loop(
    call: Call, *, rate: float, duration: float, drain: float = 10.0, keep: bool = True
) -> LoadResult:
    """Start `call(i)` at `rate` per second for `duration` seconds, then wait up to `drain` for the rest.

    `keep=False` keeps counts and recent latencies only, so a long soak's own memory stays flat.
    """
    if rate <= 0 or duration <= 0:
        raise ValueError(f"rate, duration: must be > 0, got {rate!r}, {duration!r}")
    result = LoadResult(rate, duration, keep)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    tasks: set[asyncio.Task[None]] = set()

    async def one(i: int, intended: float) -> None:
        try:
            detail, ok = await call(i), True
        except Exception as exc:
            detail, ok = type(exc).__name__, False
        result.add(Sample(intended - t0, loop.time() - intended, ok, detail))

    total = int(rate * duration)
    for i in range(total):
        intended = t0 + i / rate
        delay = intended - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = loop.create_task(one(i, intended))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        _, pending = await asyncio.wait(set(tasks), timeout=drain)
        for task in pending:
            task.cancel()
        result.unfinished = len(pending)
        await asyncio.gather(*pending, return_exceptions=True)
    result.samples.sort(key=lambda s: s.at)
    return result


async def at(start: float, offset: float) -> None:
    """Sleep until `offset` seconds after `start` (a loop.time() value)."""
    await asyncio.sleep(max(0.0, start + offset - asyncio.get_running_loop().time()))


class LoopLag:
    """How late the event loop wakes a 5 ms sleeper: the machine's own noise, beside the figures.

    On a shared machine a latency percentile moves with other processes' load; recording the
    loop's lateness in the same windows tells a slow mesh from a busy machine.
    """

    def __init__(self, tick: float = 0.005) -> None:
        self.tick = tick
        self.samples: list[tuple[float, float]] = []  # (seconds since start, lateness)
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        while True:
            before = loop.time()
            await asyncio.sleep(self.tick)
            now = loop.time()
            self.samples.append((before - t0, now - before - self.tick))

    def p(self, q: float, start: float = 0.0, end: float = math.inf) -> float:
        return percentile((lag for at, lag in self.samples if start <= at < end), q)

    async def __aenter__(self) -> LoopLag:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


# -- counting attempts from the client side ----------------------------------------------------


class AttemptLog:
    """Monotonic times of every attempt per instance id, as seen just above the transport."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = defaultdict(list)

    def layer(self, inner: Service) -> Service:
        return _AttemptLayer(inner, self)

    def install(self, client: MeshClient) -> AttemptLog:
        """Put the log innermost in `client.stack` (beneath load tracking, right above the transport)."""
        innermost = client.stack.roles[-1]
        client.stack.insert_after(innermost, "attempt-log", self.layer, "counts attempts per instance")
        return self

    def count(self, instance_id: str, since: float = -math.inf, until: float = math.inf) -> int:
        times = self.times.get(instance_id, [])
        return bisect.bisect_left(times, until) - bisect.bisect_left(times, since)

    def total(self) -> int:
        return sum(len(t) for t in self.times.values())


class _AttemptLayer:
    __slots__ = ("inner", "log")

    def __init__(self, inner: Service, log: AttemptLog) -> None:
        self.inner = inner
        self.log = log

    async def __call__(self, request: Request) -> Response:
        if request.instance is not None:
            self.log.times[request.instance.service_id].append(time.monotonic())
        return await self.inner(request)


# -- upstream processes ------------------------------------------------------------------------


class UpstreamProcess:
    """`upstream_app.py` in its own process group on a fixed 127.0.0.1 port."""

    def __init__(self, port: int | None = None, *, mode: str = "ok", delay_ms: float = 0.0) -> None:
        self.port = port or free_port()
        self.mode = mode
        self.delay_ms = delay_ms
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> tuple[str, int]:
        return (LOOPBACK, self.port)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 15.0) -> UpstreamProcess:
        args = [sys.executable, "-m", "tests.chaos.upstream_app", "--port", str(self.port)]
        args += ["--mode", self.mode, "--delay-ms", str(self.delay_ms)]
        self.process = subprocess.Popen(
            args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:  # the port answers once the app is serving
            if self.process.poll() is not None:
                raise RuntimeError(f"upstream on port {self.port} exited with {self.process.returncode}")
            try:
                self.stats()
                return self
            except OSError:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"upstream on port {self.port} did not start within {timeout}s")

    def kill(self) -> None:
        """SIGKILL: no goodbye, sockets are torn down by the kernel."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()
        self.process = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def restart(self) -> UpstreamProcess:
        self.kill()
        return self.start()

    def _control(self, method: str, path: str) -> Any:
        req = urllib.request.Request(f"http://{LOOPBACK}:{self.port}{path}", method=method)
        with urllib.request.urlopen(req, timeout=2) as r:
            return json.loads(r.read())

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._control("GET", "/_control/stats")
        return result

    def set_mode(self, mode: str, seconds: float | None = None) -> None:
        query = f"?seconds={seconds}" if seconds is not None else ""
        self._control("POST", f"/_control/mode/{mode}{query}")

    async def astart(self) -> UpstreamProcess:
        return await asyncio.to_thread(self.start)

    async def aset_mode(self, mode: str, seconds: float | None = None) -> None:
        await asyncio.to_thread(partial(self.set_mode, mode, seconds))

    async def astats(self) -> dict[str, Any]:
        return await asyncio.to_thread(self.stats)


# -- resources ---------------------------------------------------------------------------------


def rss_bytes(pid: int | str = "self") -> int:
    """Resident set size of a process, from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def open_fds(pid: int | str = "self") -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@dataclass(slots=True)
class ResourceSample:
    at: float  # seconds since sampling began
    rss: int
    fds: int


class ResourceSampler:
    """Samples a process's RSS and FD count every `interval` seconds in a background task."""

    def __init__(self, pid: int | str = "self", interval: float = 1.0) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[ResourceSample] = []
        self._task: asyncio.Task[None] | None = None
        self._t0 = 0.0

    def sample(self) -> ResourceSample:
        s = ResourceSample(time.monotonic() - self._t0, rss_bytes(self.pid), open_fds(self.pid))
        self.samples.append(s)
        return s

    async def _run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.interval)

    async def __aenter__(self) -> ResourceSampler:
        self._t0 = time.monotonic()
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.sample()

    def window(self, start: float, end: float = math.inf) -> list[ResourceSample]:
        return [s for s in self.samples if start <= s.at < end]
