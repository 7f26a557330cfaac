"""Alerts: thresholds over the mesh's state, evaluated for the dashboard and exported to Prometheus."""

from meshkit.plane.alerts.prometheus import alert_expressions, prometheus_rules
from meshkit.plane.alerts.rules import Alert, AlertRules, Severity, evaluate
from meshkit.plane.alerts.tracker import AlertTracker, ResolvedAlert

__all__ = [
    "Alert",
    "AlertRules",
    "AlertTracker",
    "ResolvedAlert",
    "Severity",
    "alert_expressions",
    "evaluate",
    "prometheus_rules",
]
