"""Outlier detection: passive health checking from the outcomes of real calls.

An instance that fails `consecutive_failures` calls in a row (5xx, connect errors, resets,
timeouts; see `meshkit.outcome`) is ejected: the balancer skips it for
`base_ejection_time x times ejected`, capped at `max_ejection_time`, after which it returns
by itself. These are Envoy's consecutive-5xx rules and defaults (5 failures, 30 s, 300 s).
Two guards keep ejection from making an outage worse, also as in Envoy:

- never more than `max_ejection_percent` of a service's instances are ejected at once,
  but always at least one (so small services can still shed a bad instance);
- panic mode: when the share of instances that are neither ejected nor marked unhealthy
  falls below `panic_threshold` percent, `allows()` admits every instance again: spreading
  load over a partly broken fleet beats crushing the few survivors.

The multiplier decays while an instance behaves: each `base_ejection_time` spent back in
service since its last return forgives one earlier ejection (Envoy lowers it likewise).
`allows()` is the balancer's gate and costs one dict lookup for an instance that is not
ejected. Returns are noticed on the next `record()`/`ejected()` and emitted as `Ejection`
events with `ejected=False`, timed when the ejection actually ended.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from meshkit.clock import SYSTEM_CLOCK, Clock
from meshkit.events import Ejection, EventBus
from meshkit.outcome import Outcome, classify
from meshkit.service import Service
from meshkit.types import Request, Response, ServiceInstance, ServiceState

_SUCCESS = Outcome.SUCCESS  # a global: reading it through the Enum class costs ~1,000 instructions

EJECTED_KEY = "outlier.ejected"  # request.context: ids of the service's ejected instances, or 0


@dataclass(frozen=True, slots=True)
class OutlierPolicy:
    consecutive_failures: int = 5
    base_ejection_time: float = 30.0  # seconds
    max_ejection_time: float = 300.0  # seconds
    max_ejection_percent: float = 10.0  # of a service's instances; at least one may always be ejected
    panic_threshold: float = 50.0  # percent of instances usable below which every instance is allowed

    def __post_init__(self) -> None:
        n = self.consecutive_failures
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"consecutive_failures: must be an integer >= 1, got {n!r}")
        if not _number(self.base_ejection_time) or self.base_ejection_time <= 0:
            raise ValueError(
                f"base_ejection_time: must be a number of seconds > 0, got {self.base_ejection_time!r}"
            )
        if not _number(self.max_ejection_time) or self.max_ejection_time < self.base_ejection_time:
            raise ValueError(
                f"max_ejection_time: must be a number of seconds >= base_ejection_time "
                f"({self.base_ejection_time!r}), got {self.max_ejection_time!r}"
            )
        for name in ("max_ejection_percent", "panic_threshold"):
            value = getattr(self, name)
            if not _number(value) or not 0 <= value <= 100:
                raise ValueError(f"{name}: must be a percentage in 0-100, got {value!r}")


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class _Host:
    __slots__ = ("duration", "failures", "returned_at", "service", "times_ejected", "until")

    def __init__(self, service: str) -> None:
        self.service = service
        self.failures = 0
        self.duration = 0.0
        self.times_ejected = 0
        self.until = 0.0  # monotonic end of the current ejection, 0.0 when not ejected
        self.returned_at = 0.0


class OutlierDetector:
    """Ejects instances that keep failing; `allows(instance)` (or calling it) is the balancer's gate."""

    reason = "ejected as an outlier"  # what the balancer says about instances this gate refuses
    # `refusing`: how many instances are ejected; while 0 the balancer skips this gate

    def __init__(
        self, policy: OutlierPolicy | None = None, *, clock: Clock = SYSTEM_CLOCK, bus: EventBus | None = None
    ) -> None:
        self.policy = policy or OutlierPolicy()
        self._clock = clock
        self._bus = bus
        self._hosts: dict[str, _Host] = {}
        self._until: dict[str, float] = {}  # ejected instance id -> monotonic end of ejection
        self.refusing = 0  # len(self._until), kept as a plain attribute for the balancer
        self._members: dict[str, dict[str, ServiceInstance]] = {}  # service -> id -> instance
        self._next_expiry = math.inf

    def configure(self, policy: OutlierPolicy) -> None:
        """Use `policy` from now on; current ejections keep their end times."""
        self.policy = policy

    def update_membership(self, service: str, instances: Iterable[ServiceInstance]) -> None:
        """The service's current instances (the base of the ejection cap and of panic mode)."""
        members = {i.service_id: i for i in instances}
        for gone in self._members.get(service, {}).keys() - members.keys():
            self._hosts.pop(gone, None)
            self._until.pop(gone, None)
        self.refusing = len(self._until)
        self._members[service] = members

    def allows(self, instance: ServiceInstance) -> bool:
        until = self._until.get(instance.service_id)
        if until is None:
            return True
        now = self._clock.monotonic()
        return now >= until or self._in_panic(instance.service_name, now)

    __call__ = allows

    def record(self, instance: ServiceInstance, outcome: Outcome) -> None:
        """Feed one call's outcome for `instance`; may eject it."""
        if self._next_expiry != math.inf:  # some instance is ejected: return those whose time is up
            now = self._clock.monotonic()
            if now >= self._next_expiry:
                self._sweep(now)
        host = self._hosts.get(instance.service_id)
        if host is None:
            host = self._hosts[instance.service_id] = _Host(instance.service_name)
            self._members.setdefault(instance.service_name, {}).setdefault(instance.service_id, instance)
        if host.until:  # already ejected (a call in flight, or panic mode): nothing more to decide
            return
        if outcome is _SUCCESS:
            host.failures = 0
            return
        host.failures += 1
        if host.failures >= self.policy.consecutive_failures:
            self._eject(instance, host, self._clock.monotonic())

    def ejected(self) -> dict[str, float]:
        """Ejected instance ids and the seconds until each returns."""
        now = self._clock.monotonic()
        self._sweep(now)
        return {iid: until - now for iid, until in self._until.items()}

    def ejected_in(self, service: str) -> tuple[str, ...]:
        """The ids of `service`'s instances ejected now (an ejection already over may still show)."""
        hosts = self._hosts
        return tuple(
            iid for iid in self._until if (host := hosts.get(iid)) is not None and host.service == service
        )

    def times_ejected(self, instance_id: str) -> int:
        host = self._hosts.get(instance_id)
        return host.times_ejected if host else 0

    def in_panic(self, service: str) -> bool:
        return self._in_panic(service, self._clock.monotonic())

    def _in_panic(self, service: str, now: float) -> bool:
        members = self._members.get(service)
        if not members:
            return False
        usable = 0
        for iid, inst in members.items():
            if inst.state is not ServiceState.UNHEALTHY and self._until.get(iid, 0.0) <= now:
                usable += 1
        return usable * 100.0 < self.policy.panic_threshold * len(members)

    def _eject(self, instance: ServiceInstance, host: _Host, now: float) -> None:
        policy = self.policy
        members = self._members.get(instance.service_name) or {instance.service_id: instance}
        cap = max(1, int(len(members) * policy.max_ejection_percent / 100.0 + 1e-9))
        if sum(1 for iid in members if iid in self._until) >= cap:
            return  # the failures keep counting; the next one ejects it if room has been made
        if host.times_ejected:  # it has been back since returned_at
            forgiven = int((now - host.returned_at) // policy.base_ejection_time)
            host.times_ejected = max(0, host.times_ejected - forgiven)
        host.times_ejected += 1
        duration = host.duration = min(
            policy.base_ejection_time * host.times_ejected, policy.max_ejection_time
        )
        host.until = self._until[instance.service_id] = now + duration
        self.refusing = len(self._until)
        host.failures = 0
        self._next_expiry = min(self._next_expiry, host.until)
        self._emit(instance.service_id, instance.service_name, duration, host.times_ejected, True, 0.0)

    def _sweep(self, now: float) -> None:
        """Return every instance whose ejection has ended."""
        next_expiry = math.inf
        for iid, until in list(self._until.items()):
            if until > now:
                next_expiry = min(next_expiry, until)
                continue
            del self._until[iid]
            self.refusing = len(self._until)
            host = self._hosts[iid]
            host.until, host.returned_at, host.failures = 0.0, until, 0
            self._emit(iid, host.service, host.duration, host.times_ejected, False, now - until)
        self._next_expiry = next_expiry

    def _emit(self, iid: str, service: str, duration: float, times: int, ejected: bool, ago: float) -> None:
        if self._bus is not None:
            at = self._clock.time() - ago
            self._bus.emit(Ejection(iid, service, duration, times, ejected=ejected, at=at))


class OutlierLayer:
    """Beneath the balancer: reports each attempt's outcome for `request.instance` to the detector."""

    __slots__ = ("_seen", "detector", "inner")

    def __init__(self, inner: Service, *, detector: OutlierDetector) -> None:
        self.inner = inner
        self.detector = detector
        self._seen: dict[str, Sequence[ServiceInstance]] = {}  # service -> candidates last reported

    async def __call__(self, request: Request) -> Response:
        candidates = request.candidates
        if candidates and self._seen.get(request.service) is not candidates:
            self._seen[request.service] = candidates  # membership changed (a new list from discovery)
            self.detector.update_membership(request.service, candidates)
        instance = request.instance
        if instance is None:
            return await self.inner(request)
        detector = self.detector  # what the attempt span reports as meshkit.outlier.ejected
        request.context[EJECTED_KEY] = detector.ejected_in(request.service) if detector.refusing else 0
        try:
            response = await self.inner(request)
        except Exception as exc:
            self.detector.record(instance, classify(exc))
            raise
        # classify() of a response, inlined: a 5xx is the only failure a response can be
        self.detector.record(instance, _SUCCESS if response.status < 500 else classify(response))
        return response
