"""Which instances have run out of time: missed TTL heartbeats, or critical for too long.

Consul's model: a TTL check that is not refreshed within its TTL fails, and a service
whose check stays critical for `deregister_critical_service_after` is removed. Here an
instance with a `ttl` expires once `ttl` seconds pass without a heartbeat (registration
counts as one), and an UNHEALTHY instance is removed after `deregister_critical_after`
seconds (its check's value when it has one). Only instances that can expire are tracked,
so a reaper pass costs O(tracked), not O(registry).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from meshkit.clock import Clock
from meshkit.types import ServiceInstance, ServiceState


class ExpiryTracker:
    __slots__ = ("_clock", "_critical_after", "_critical_since", "_last_seen")

    def __init__(self, clock: Clock, critical_after: float) -> None:
        self._clock = clock
        self._critical_after = critical_after
        self._last_seen: dict[str, float] = {}
        self._critical_since: dict[str, float] = {}

    def reset(self, instances: Iterable[ServiceInstance]) -> None:
        """Start every clock afresh (after loading from disk)."""
        self._last_seen.clear()
        self._critical_since.clear()
        for inst in instances:
            self.changed(inst.service_id, inst, registered=True)

    def heartbeat(self, service_id: str) -> None:
        if service_id in self._last_seen:
            self._last_seen[service_id] = self._clock.monotonic()

    def changed(self, service_id: str, new: ServiceInstance | None, *, registered: bool) -> None:
        """Track a committed change; a (re-)registration counts as a heartbeat."""
        now = self._clock.monotonic()
        if new is None or new.ttl is None:
            self._last_seen.pop(service_id, None)
        elif registered or service_id not in self._last_seen:
            self._last_seen[service_id] = now
        if new is None or new.state != ServiceState.UNHEALTHY:
            self._critical_since.pop(service_id, None)
        else:
            self._critical_since.setdefault(service_id, now)

    def reason(self, inst: ServiceInstance, now: float) -> str | None:
        """Why `inst` should be deregistered now, or None."""
        seen = self._last_seen.get(inst.service_id)
        if seen is not None and inst.ttl is not None and now - seen >= inst.ttl:
            return f"no heartbeat for {now - seen:.1f}s (ttl {inst.ttl:g}s)"
        since = self._critical_since.get(inst.service_id)
        if since is not None:
            limit = inst.check.deregister_critical_after if inst.check is not None else self._critical_after
            if now - since >= limit:
                return f"unhealthy for {now - since:.1f}s (deregister_critical_after {limit:g}s)"
        return None

    def due(self, by_id: Mapping[str, ServiceInstance]) -> list[str]:
        now = self._clock.monotonic()
        ids = self._last_seen.keys() | self._critical_since.keys()
        return [sid for sid in ids if (inst := by_id.get(sid)) is not None and self.reason(inst, now)]
