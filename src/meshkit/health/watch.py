"""What the health checker keeps per watched instance: its hysteresis and recent history.

Both logs are bounded deques (the newest `history_size` results and `transitions_size`
transitions); every transition is also emitted on the event bus for anyone keeping more.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

from meshkit.events import HealthTransition
from meshkit.health.hysteresis import Hysteresis
from meshkit.types import HealthCheck, ServiceInstance, ServiceState


@dataclass(frozen=True, slots=True)
class CheckRecord:
    """One check result (or TTL report) as kept in an instance's history."""

    at: float  # wall-clock seconds
    ok: bool
    detail: str
    duration: float
    state: ServiceState  # the instance's state after this result


class Watch:
    """One watched instance: its check, hysteresis, recent results and transitions, and its task."""

    __slots__ = (
        "check",
        "down_since",
        "history",
        "hysteresis",
        "instance",
        "task",
        "transitions",
        "ttl_deadline",
    )

    def __init__(
        self, instance: ServiceInstance, check: HealthCheck, state: ServiceState, sizes: tuple[int, int]
    ) -> None:
        self.instance = instance
        self.check = check
        self.hysteresis = Hysteresis(check, state)
        self.history: deque[CheckRecord] = deque(maxlen=sizes[0])
        self.transitions: deque[HealthTransition] = deque(maxlen=sizes[1])
        self.task: asyncio.Task[None] | None = None
        self.ttl_deadline = 0.0
        self.down_since: float | None = None  # monotonic time it became unhealthy
