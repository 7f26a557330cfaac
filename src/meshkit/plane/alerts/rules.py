"""Alert thresholds and the pure function that turns the mesh's state into alerts.

The seed's dashboard thresholds are kept: a service is healthy at a healthy-instance ratio
>= 0.8 and degraded >= 0.5 (unhealthy below); the mesh's health score (percent of healthy
instances) is critical below 50 and a warning below 80; an open circuit breaker warns; a
service with no healthy instance is critical. To these, the golden signals of the SRE book
(Beyer et al., "Monitoring Distributed Systems"): a service's error rate above 5% and its
p99 latency above 1000 ms warn. `evaluate` reads only the plane's public shapes (GET
/topology, GET /health) and per-service stats, so it is pure and tested without a mesh.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

Severity = Literal["critical", "warning"]


def _ratio(name: str, value: object, *, low: float = 0.0, high: float = 1.0) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not low <= value <= high:  # type: ignore[operator]
        raise ValueError(f"{name}: must be a number from {low:g} to {high:g}, got {value!r}")
    return float(value)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class AlertRules:
    """The thresholds; every one is configurable and validated (ValueError names the field)."""

    service_healthy_ratio: float = 0.8
    service_degraded_ratio: float = 0.5
    mesh_critical_below: float = 50.0  # health score, percent
    mesh_warning_below: float = 80.0
    breaker_open_warns: bool = True
    error_rate: float = 0.05  # share of calls that failed
    p99_ms: float = 1000.0
    min_requests: int = 1  # error rate and p99 need at least this many calls in the sample

    def __post_init__(self) -> None:
        _ratio("service_healthy_ratio", self.service_healthy_ratio)
        _ratio("service_degraded_ratio", self.service_degraded_ratio)
        if self.service_degraded_ratio > self.service_healthy_ratio:
            raise ValueError(
                f"service_degraded_ratio: must be <= service_healthy_ratio ({self.service_healthy_ratio:g}), "
                f"got {self.service_degraded_ratio!r}"
            )
        _ratio("mesh_critical_below", self.mesh_critical_below, high=100.0)
        _ratio("mesh_warning_below", self.mesh_warning_below, high=100.0)
        if self.mesh_critical_below > self.mesh_warning_below:
            raise ValueError(
                f"mesh_critical_below: must be <= mesh_warning_below ({self.mesh_warning_below:g}), "
                f"got {self.mesh_critical_below!r}"
            )
        if not isinstance(self.breaker_open_warns, bool):
            raise ValueError(f"breaker_open_warns: must be true or false, got {self.breaker_open_warns!r}")
        _ratio("error_rate", self.error_rate)
        _ratio("p99_ms", self.p99_ms, high=3_600_000.0)
        m = self.min_requests
        if isinstance(m, bool) or not isinstance(m, int) or m < 1:
            raise ValueError(f"min_requests: must be an integer >= 1, got {m!r}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def service_status(self, healthy: int, total: int) -> str:
        """The seed's rule: healthy, degraded or unhealthy from the healthy-instance ratio."""
        ratio = healthy / total if total else 0.0
        if ratio >= self.service_healthy_ratio:
            return "healthy"
        return "degraded" if ratio >= self.service_degraded_ratio else "unhealthy"


@dataclass(frozen=True, slots=True)
class Alert:
    """One firing alert. `since` is when it started firing (unix seconds)."""

    name: str
    severity: Severity
    service: str | None
    message: str
    since: float
    instance: str | None = None
    value: float | None = None

    @property
    def key(self) -> tuple[str, str | None, str | None]:
        return (self.name, self.service, self.instance)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _service_alerts(rules: AlertRules, name: str, entry: Mapping[str, Any], now: float) -> list[Alert]:
    total, healthy = int(entry.get("total", 0)), int(entry.get("healthy", 0))
    if total and not healthy:
        msg = f"{name}: no healthy instance (0 of {total})"
        return [Alert("ServiceDown", "critical", name, msg, now, value=0.0)]
    status = rules.service_status(healthy, total)
    if total and status != "healthy":
        msg = f"{name} is {status}: {healthy} of {total} instances healthy"
        return [Alert("ServiceDegraded", "warning", name, msg, now, value=healthy / total)]
    return []


def _breaker_alerts(topology: Mapping[str, Any], now: float) -> list[Alert]:
    alerts = []
    for name, entry in topology.get("services", {}).items():
        for inst in entry.get("instances", []):
            if inst.get("circuit_breaker") == "open":
                msg = f"{name}: circuit breaker open for instance {inst.get('id')}"
                alerts.append(Alert("CircuitBreakerOpen", "warning", name, msg, now, instance=inst.get("id")))
    return alerts


def _traffic_alerts(rules: AlertRules, name: str, stats: Mapping[str, Any], now: float) -> list[Alert]:
    if float(stats.get("requests", 0) or 0) < rules.min_requests:
        return []
    alerts = []
    error_rate = stats.get("error_rate")
    if error_rate is not None and error_rate > rules.error_rate:
        msg = f"{name}: error rate {error_rate:.1%} above {rules.error_rate:.1%}"
        alerts.append(Alert("HighErrorRate", "warning", name, msg, now, value=float(error_rate)))
    p99 = stats.get("p99_ms")
    if p99 is not None and p99 > rules.p99_ms:
        msg = f"{name}: p99 latency {p99:.0f} ms above {rules.p99_ms:g} ms"
        alerts.append(Alert("HighLatency", "warning", name, msg, now, value=float(p99)))
    return alerts


def evaluate(
    rules: AlertRules,
    topology: Mapping[str, Any],
    health: Mapping[str, Any],
    service_stats: Mapping[str, Mapping[str, Any]],
    now: float,
) -> list[Alert]:
    """Every alert the state fires, critical first. `topology` and `health` are the GET /topology
    and GET /health bodies; `service_stats` maps a service to {requests, error_rate, p99_ms}."""
    alerts: list[Alert] = []
    score = 100.0 * float(health.get("health_score", 1.0))
    if int(health.get("total_instances", 0) or 0):
        if score < rules.mesh_critical_below:
            msg = f"mesh health {score:.0f}% below {rules.mesh_critical_below:g}%"
            alerts.append(Alert("MeshHealthCritical", "critical", None, msg, now, value=score))
        elif score < rules.mesh_warning_below:
            msg = f"mesh health {score:.0f}% below {rules.mesh_warning_below:g}%"
            alerts.append(Alert("MeshHealthLow", "warning", None, msg, now, value=score))
    for name, entry in sorted(topology.get("services", {}).items()):
        alerts += _service_alerts(rules, name, entry, now)
    if rules.breaker_open_warns:
        alerts += _breaker_alerts(topology, now)
    for name, stats in sorted(service_stats.items()):
        alerts += _traffic_alerts(rules, name, stats, now)
    alerts.sort(key=lambda a: (a.severity != "critical", a.service or "", a.name, a.instance or ""))
    return alerts
