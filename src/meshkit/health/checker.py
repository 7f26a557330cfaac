"""The active health checker: probes every watched instance on its own jittered schedule.

Each instance gets one asyncio task. HTTP and TCP checks probe every `check.interval`
seconds within `check.timeout`; results pass through `Hysteresis` (N failures down, M
passes up) and each change of state is recorded with its time, emitted as a
`HealthTransition` and handed to `on_transition` (the registry's hook). TTL checks invert
the direction: the instance reports pass/warn/fail itself (`report_ttl`) and silence for
longer than `check.ttl` marks it unhealthy, as Consul's TTL checks do. An instance that
stays unhealthy for `check.deregister_critical_after` seconds is handed to `on_expired`
and no longer checked (Consul's DeregisterCriticalServiceAfter).

So that a thousand instances do not fire at once, the first check waits a random time in
[0, interval) and every later wait is the interval +-10% (Envoy's `initial_jitter` and
`interval_jitter_percent`). Time and randomness are injected, so a `FakeClock` drives it.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import random
from collections.abc import Awaitable, Callable, Container, Iterable, Mapping

import aiohttp

from meshkit.clock import SYSTEM_CLOCK, Clock
from meshkit.events import EventBus, HealthTransition
from meshkit.health.probes import HEALTHY_STATUSES, Probe, ProbeResult, http_probe, tcp_probe
from meshkit.health.watch import CheckRecord, Watch
from meshkit.types import HealthCheck, ServiceInstance, ServiceState

log = logging.getLogger(__name__)

TransitionCallback = Callable[[ServiceInstance, ServiceState, ServiceState, str], Awaitable[None] | None]
ExpiredCallback = Callable[[ServiceInstance], Awaitable[None] | None]
TTL_STATUSES = {"pass": ServiceState.HEALTHY, "warn": ServiceState.DEGRADED, "fail": ServiceState.UNHEALTHY}
INTERVAL_JITTER = 0.10  # each wait is interval * (1 +- 10%)


class HealthChecker:
    def __init__(
        self,
        *,
        on_transition: TransitionCallback | None = None,
        on_expired: ExpiredCallback | None = None,
        bus: EventBus | None = None,
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
        probes: Mapping[str, Probe] | None = None,
        accept: Container[int] = HEALTHY_STATUSES,
        history_size: int = 50,
        transitions_size: int = 100,
    ) -> None:
        for name, size in (("history_size", history_size), ("transitions_size", transitions_size)):
            if isinstance(size, bool) or not isinstance(size, int) or size < 1:
                raise ValueError(f"{name}: must be an integer >= 1, got {size!r}")
        self._on_transition = on_transition
        self._on_expired = on_expired
        self._bus = bus
        self._clock = clock
        self._rng = rng or random.Random()
        self._sizes = (history_size, transitions_size)
        tcp: Probe = functools.partial(tcp_probe, clock=clock)
        self._probes: dict[str, Probe] = {"http": self._http, "tcp": tcp}
        self._probes.update(probes or {})
        self._accept = accept
        self._watches: dict[str, Watch] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._running = False

    # -- the watched set ------------------------------------------------------------------

    def watch(self, instance: ServiceInstance) -> None:
        """Start checking `instance` (now, or at `start()`); a changed check restarts its schedule."""
        check = instance.check
        if check is None:
            raise ValueError(f"check: instance {instance.id!r} has no health check to run")
        old = self._watches.get(instance.id)
        if old is not None and old.check == check:
            old.instance = instance
            return
        w = Watch(instance, check, old.hysteresis.state if old else instance.state, self._sizes)
        if old is not None:
            self._cancel(old)
            w.history, w.transitions, w.down_since = old.history, old.transitions, old.down_since
        elif w.hysteresis.state is ServiceState.UNHEALTHY:
            w.down_since = self._clock.monotonic()
        w.ttl_deadline = self._clock.monotonic() + (check.ttl or 0.0)
        self._watches[instance.id] = w
        if self._running:
            self._spawn(w)

    def unwatch(self, instance_id: str) -> bool:
        w = self._watches.pop(instance_id, None)
        if w is not None:
            self._cancel(w)
        return w is not None

    def sync(self, instances: Iterable[ServiceInstance]) -> None:
        """Make the watched set equal the instances that have a check (e.g. the registry's list)."""
        wanted = {i.id: i for i in instances if i.check is not None}
        for instance_id in [i for i in self._watches if i not in wanted]:
            self.unwatch(instance_id)
        for instance in wanted.values():
            self.watch(instance)

    def __contains__(self, instance_id: object) -> bool:
        return instance_id in self._watches

    def __len__(self) -> int:
        return len(self._watches)

    # -- what it knows --------------------------------------------------------------------

    def state(self, instance_id: str) -> ServiceState:
        return self._get(instance_id).hysteresis.state

    def history(self, instance_id: str) -> list[CheckRecord]:
        """The most recent check results, oldest first (at most `history_size`)."""
        return list(self._get(instance_id).history)

    def transitions(self, instance_id: str) -> list[HealthTransition]:
        """The most recent state changes with their times, oldest first."""
        return list(self._get(instance_id).transitions)

    # -- running ----------------------------------------------------------------------------

    async def start(self) -> None:
        if not self._running:
            self._running = True
            for w in self._watches.values():
                self._spawn(w)

    async def stop(self) -> None:
        self._running = False
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for w in self._watches.values():
            w.task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> HealthChecker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def check_now(self, instance_id: str) -> CheckRecord:
        """Run one HTTP/TCP probe immediately, outside the schedule, and apply its result."""
        w = self._get(instance_id)
        if w.check.kind == "ttl":
            raise ValueError(f"instance_id: {instance_id!r} has a ttl check, which is reported, not probed")
        return await self._probe(w)

    async def report_ttl(self, instance_id: str, status: str, note: str = "") -> None:
        """A TTL-checked instance reports itself: pass -> HEALTHY, warn -> DEGRADED, fail -> UNHEALTHY."""
        new = TTL_STATUSES.get(status)
        if new is None:
            raise ValueError(f"status: must be one of {', '.join(TTL_STATUSES)}, got {status!r}")
        w = self._get(instance_id)
        if w.check.kind != "ttl":
            kind = w.check.kind
            raise ValueError(f"instance_id: {instance_id!r} has a {kind} check; only ttl checks report")
        assert w.check.ttl is not None  # HealthCheck guarantees it for kind == "ttl"
        w.ttl_deadline = self._clock.monotonic() + w.check.ttl
        await self._apply_ttl(w, new, f"ttl report {status}" + (f": {note}" if note else ""))

    # -- internals --------------------------------------------------------------------------

    def _get(self, instance_id: str) -> Watch:
        try:
            return self._watches[instance_id]
        except KeyError:
            raise KeyError(f"instance_id: {instance_id!r} is not watched by the health checker") from None

    def _spawn(self, w: Watch) -> None:
        task = asyncio.get_running_loop().create_task(self._run(w), name=f"health:{w.instance.id}")
        w.task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _cancel(self, w: Watch) -> None:
        if w.task is not None:
            w.task.cancel()
            w.task = None

    async def _run(self, w: Watch) -> None:
        if w.check.kind == "ttl":
            return await self._run_ttl(w)
        await self._clock.sleep(self._rng.uniform(0.0, w.check.interval))
        while True:
            await self._probe(w)
            if await self._expire(w):
                return
            jitter = self._rng.uniform(-INTERVAL_JITTER, INTERVAL_JITTER)
            await self._clock.sleep(w.check.interval * (1.0 + jitter))

    async def _run_ttl(self, w: Watch) -> None:
        ttl = w.check.ttl or 0.0
        while True:
            remaining = w.ttl_deadline - self._clock.monotonic()
            if remaining > 0:
                await self._clock.sleep(remaining)  # a report meanwhile moves the deadline on
                continue
            if w.hysteresis.state is not ServiceState.UNHEALTHY:
                await self._apply_ttl(w, ServiceState.UNHEALTHY, f"ttl expired: no report in {ttl:g}s")
            if await self._expire(w):
                return
            await self._clock.sleep(ttl)

    async def _probe(self, w: Watch) -> CheckRecord:
        probe = self._probes[w.check.kind]
        try:
            result = await probe(w.instance, w.check)
        except Exception as exc:  # an overriding probe broke its contract; count it as a failure
            result = ProbeResult(False, f"probe error: {type(exc).__name__}: {exc}", 0.0)
        old = w.hysteresis.state
        new = w.hysteresis.observe(result.ok)
        record = CheckRecord(
            self._clock.time(), result.ok, result.detail, result.duration, w.hysteresis.state
        )
        w.history.append(record)
        if new is not None:
            verdict = "passed" if result.ok else "failed"
            run = f"{w.hysteresis.streak} in a row" if old is not ServiceState.UNKNOWN else "first check"
            await self._transition(w, old, new, f"{run} {verdict}: {result.detail}")
        return record

    async def _apply_ttl(self, w: Watch, state: ServiceState, detail: str) -> None:
        old = w.hysteresis.state
        new = w.hysteresis.force(state)
        ok = state is not ServiceState.UNHEALTHY
        w.history.append(CheckRecord(self._clock.time(), ok, detail, 0.0, state))
        if new is not None:
            await self._transition(w, old, new, detail)

    async def _transition(self, w: Watch, old: ServiceState, new: ServiceState, reason: str) -> None:
        inst = w.instance
        event = HealthTransition(
            inst.id, inst.service_name, old.value, new.value, reason, at=self._clock.time()
        )
        w.transitions.append(event)
        w.down_since = self._clock.monotonic() if new is ServiceState.UNHEALTHY else None
        inst.state = new
        log.info("health: %s %s -> %s (%s)", inst.id, old.value, new.value, reason)
        if self._bus is not None:
            self._bus.emit(event)
        if self._on_transition is not None:
            await _call_hook(self._on_transition, inst, old, new, reason)

    async def _expire(self, w: Watch) -> bool:
        """Hand an instance unhealthy for too long to `on_expired`, and stop checking it."""
        if self._on_expired is None or w.down_since is None:
            return False
        if self._clock.monotonic() - w.down_since < w.check.deregister_critical_after:
            return False
        if self._watches.get(w.instance.id) is w:
            del self._watches[w.instance.id]  # first, so the hook may call unwatch() safely
        w.task = None
        await _call_hook(self._on_expired, w.instance)
        return True

    async def _http(self, instance: ServiceInstance, check: HealthCheck) -> ProbeResult:
        if self._session is None or self._session.closed:  # one pooled session for every HTTP probe
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        return await http_probe(self._session, instance, check, accept=self._accept, clock=self._clock)


async def _call_hook(hook: Callable[..., Awaitable[None] | None], *args: object) -> None:
    try:
        result = hook(*args)
        if inspect.isawaitable(result):
            await result
    except Exception:
        log.exception("health checker hook %r failed", hook)
