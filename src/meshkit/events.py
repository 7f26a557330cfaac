"""Events: every decision the mesh makes that someone may want to see or count.

Breaker transitions, health-state changes, ejections and retries are emitted as small
frozen records on an `EventBus`; metrics, the dashboard and logs subscribe to it instead
of being called from inside the state machines.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Event:
    at: float = field(kw_only=True, default=0.0)  # wall-clock seconds


@dataclass(frozen=True, slots=True)
class BreakerTransition(Event):
    instance_id: str
    old: str
    new: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class HealthTransition(Event):
    instance_id: str
    service_name: str
    old: str
    new: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Ejection(Event):
    instance_id: str
    service_name: str
    duration: float
    times_ejected: int
    ejected: bool = True  # False when the instance is returned


@dataclass(frozen=True, slots=True)
class RetryAttempt(Event):
    service_name: str
    attempt: int
    reason: str
    delay: float


Subscriber = Callable[[Event], None]


class EventBus:
    """Synchronous fan-out; a failing subscriber is logged, never breaks the emitter."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        self._subscribers.append(fn)
        return lambda: self._subscribers.remove(fn)

    def emit(self, event: Event) -> None:
        for fn in self._subscribers:
            try:
                fn(event)
            except Exception:
                log.exception("event subscriber %r failed on %r", fn, event)


class EventRecorder:
    """Collects events in a list: handy in tests and for 'recent transitions' views."""

    def __init__(self, bus: EventBus | None = None) -> None:
        self.events: list[Event] = []
        if bus is not None:
            bus.subscribe(self.events.append)

    def of(self, kind: type[Event]) -> list[Event]:
        return [e for e in self.events if isinstance(e, kind)]
