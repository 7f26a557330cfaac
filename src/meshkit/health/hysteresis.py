"""Hysteresis: deciding an instance's state from a run of check results, not from one.

One failed probe is noise; `unhealthy_threshold` failures in a row mark an instance down
and `healthy_threshold` passes in a row bring it back (Envoy's and Consul's thresholds,
`failures_before_critical` / `success_before_passing`). An instance nobody has checked
yet (UNKNOWN) takes the verdict of its first check, as Envoy does at startup ("only a
single successful health check is required to mark a host healthy"), so a fresh instance
gets traffic after one pass instead of waiting a whole window. A flapping instance that
alternates pass and fail therefore changes state at most once.
"""

from __future__ import annotations

from meshkit.types import HealthCheck, ServiceState

_UP = (ServiceState.HEALTHY,)


class Hysteresis:
    """Counts consecutive passes and failures and says when the state should change."""

    __slots__ = ("_fails", "_passes", "healthy_threshold", "state", "unhealthy_threshold")

    def __init__(self, check: HealthCheck, state: ServiceState = ServiceState.UNKNOWN) -> None:
        self.healthy_threshold = check.healthy_threshold
        self.unhealthy_threshold = check.unhealthy_threshold
        self.state = state
        self._passes = 0
        self._fails = 0

    @property
    def streak(self) -> int:
        """Consecutive results agreeing with the last one (passes if the last passed)."""
        return self._passes or self._fails

    def observe(self, ok: bool) -> ServiceState | None:
        """Record one check result; return the new state if it changed, else None."""
        if ok:
            self._passes += 1
            self._fails = 0
            if self.state in _UP:
                return None
            if self.state is ServiceState.UNKNOWN or self._passes >= self.healthy_threshold:
                return self._set(ServiceState.HEALTHY)
            return None
        self._fails += 1
        self._passes = 0
        if self.state is ServiceState.UNHEALTHY:
            return None
        if self.state is ServiceState.UNKNOWN or self._fails >= self.unhealthy_threshold:
            return self._set(ServiceState.UNHEALTHY)
        return None

    def force(self, state: ServiceState) -> ServiceState | None:
        """Set the state directly (a TTL report or expiry); return it if it changed."""
        self._passes = self._fails = 0
        return None if state is self.state else self._set(state)

    def _set(self, state: ServiceState) -> ServiceState:
        self.state = state
        return state
