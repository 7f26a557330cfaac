"""Remembers when each alert started firing, across evaluations, and which ones resolved lately.

`evaluate` is pure and stamps every alert with the evaluation time; an alert that has fired
for an hour must say so, so the tracker keeps the first `since` of each alert (keyed by name,
service and instance) while it keeps firing, the way Prometheus's `ALERTS` keeps `activeAt`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass, replace
from typing import Any

from meshkit.plane.alerts.rules import Alert


@dataclass(frozen=True, slots=True)
class ResolvedAlert:
    alert: Alert
    resolved_at: float

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self.alert), "resolved_at": self.resolved_at}


class AlertTracker:
    """Feed it each evaluation's alerts; it answers the firing ones with stable `since` times."""

    def __init__(self, *, keep_resolved: int = 100) -> None:
        if isinstance(keep_resolved, bool) or not isinstance(keep_resolved, int) or keep_resolved < 0:
            raise ValueError(f"keep_resolved: must be an integer >= 0, got {keep_resolved!r}")
        self._firing: dict[tuple[str, str | None, str | None], Alert] = {}
        self._resolved: deque[ResolvedAlert] = deque(maxlen=keep_resolved)

    def update(self, alerts: list[Alert], now: float) -> list[Alert]:
        """Record one evaluation (made at `now`); returns the firing alerts, oldest `since` kept."""
        firing: dict[tuple[str, str | None, str | None], Alert] = {}
        for alert in alerts:
            previous = self._firing.get(alert.key)
            firing[alert.key] = replace(alert, since=previous.since) if previous is not None else alert
        for key, alert in self._firing.items():
            if key not in firing:
                self._resolved.appendleft(ResolvedAlert(alert, now))
        self._firing = firing
        return list(firing.values())

    @property
    def firing(self) -> list[Alert]:
        return list(self._firing.values())

    @property
    def resolved(self) -> list[ResolvedAlert]:
        """Recently resolved alerts, newest first."""
        return list(self._resolved)
