"""The alert thresholds as Prometheus alerting rules, for teams that alert from Prometheus.

`prometheus_rules(rules)` writes a rules file (the `groups:`/`rules:` YAML that `promtool
check rules` validates) over the metric names meshkit exports (meshkit.observe.metrics):
mesh_health_check_status (1 healthy, 0.5 degraded, 0 unhealthy, per instance),
mesh_circuit_breaker_state (1 open), mesh_requests_total, mesh_request_errors_total and the
mesh_request_duration_seconds histogram. Each rule mirrors one check of `evaluate`, so the
dashboard and Prometheus fire on the same conditions. Strings are written JSON-quoted, which
YAML reads as double-quoted scalars, so no YAML library is needed.
"""

from __future__ import annotations

import json
import re

from meshkit.plane.alerts.rules import AlertRules

DURATION_RE = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")  # Prometheus duration syntax

HEALTHY = "mesh_health_check_status == bool 1"
SCORE = f"100 * sum({HEALTHY}) / count(mesh_health_check_status)"


def _duration(name: str, value: str) -> str:
    if not isinstance(value, str) or not DURATION_RE.match(value):
        raise ValueError(f"{name}: must be a Prometheus duration such as 30s, 1m or 1h30m, got {value!r}")
    return value


def _rule(name: str, expr: str, for_: str, severity: str, summary: str, description: str) -> list[str]:
    return [
        f"      - alert: {name}",
        f"        expr: {json.dumps(expr)}",
        f"        for: {for_}",
        "        labels:",
        f"          severity: {severity}",
        "        annotations:",
        f"          summary: {json.dumps(summary)}",
        f"          description: {json.dumps(description)}",
    ]


def alert_expressions(rules: AlertRules, window: str = "5m") -> dict[str, tuple[str, str]]:
    """Alert name -> (PromQL expression, severity), one per check that `evaluate` makes."""
    ratio = f"avg by (service) ({HEALTHY})"
    calls = f"sum by (service) (increase(mesh_requests_total[{window}])) >= {rules.min_requests}"
    exprs = {
        "ServiceDown": (f"sum by (service) ({HEALTHY}) == 0", "critical"),
        "ServiceDegraded": (
            f"({ratio} < {rules.service_healthy_ratio:g}) and (sum by (service) ({HEALTHY}) > 0)",
            "warning",
        ),
        "MeshHealthCritical": (f"{SCORE} < {rules.mesh_critical_below:g}", "critical"),
        "MeshHealthLow": (
            f"({SCORE} < {rules.mesh_warning_below:g}) and ({SCORE} >= {rules.mesh_critical_below:g})",
            "warning",
        ),
        "HighErrorRate": (
            f"(sum by (service) (rate(mesh_request_errors_total[{window}]))"
            f" / sum by (service) (rate(mesh_requests_total[{window}])) > {rules.error_rate:g})"
            f" and ({calls})",
            "warning",
        ),
        "HighLatency": (
            "(histogram_quantile(0.99, sum by (service, le) "
            f"(rate(mesh_request_duration_seconds_bucket[{window}]))) > {rules.p99_ms / 1000:g})"
            f" and ({calls})",
            "warning",
        ),
    }
    if rules.breaker_open_warns:
        exprs["CircuitBreakerOpen"] = ("mesh_circuit_breaker_state == 1", "warning")
    return exprs


_TEXT = {
    "ServiceDown": ("{{ $labels.service }} has no healthy instance", "Every instance is failing its checks."),
    "ServiceDegraded": (
        "{{ $labels.service }} is degraded",
        "Only {{ $value | humanizePercentage }} of its instances are healthy.",
    ),
    "MeshHealthCritical": (
        "Mesh health is critical",
        '{{ $value | printf "%.0f" }}% of instances are healthy.',
    ),
    "MeshHealthLow": ("Mesh health is low", '{{ $value | printf "%.0f" }}% of instances are healthy.'),
    "CircuitBreakerOpen": (
        "Circuit breaker open for {{ $labels.instance }}",
        "Calls to {{ $labels.service }} instance {{ $labels.instance }} are failing fast.",
    ),
    "HighErrorRate": (
        "{{ $labels.service }} error rate is high",
        "{{ $value | humanizePercentage }} of calls fail.",
    ),
    "HighLatency": (
        "{{ $labels.service }} p99 latency is high",
        "p99 latency is {{ $value | humanizeDuration }}.",
    ),
}


def prometheus_rules(
    rules: AlertRules | None = None, *, for_: str = "1m", window: str = "5m", group: str = "meshkit"
) -> str:
    """A Prometheus rules file (YAML) with one alerting rule per dashboard alert."""
    rules = rules if rules is not None else AlertRules()
    _duration("for_", for_)
    _duration("window", window)
    if not isinstance(group, str) or not group.strip():
        raise ValueError(f"group: must be a non-empty string, got {group!r}")
    lines = ["groups:", f"  - name: {json.dumps(group)}", "    rules:"]
    for name, (expr, severity) in alert_expressions(rules, window).items():
        summary, description = _TEXT[name]
        lines += _rule(name, expr, for_, severity, summary, description)
    return "\n".join(lines) + "\n"
