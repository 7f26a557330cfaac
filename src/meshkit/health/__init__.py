"""Active health checking: HTTP, TCP and TTL checks with hysteresis and jittered schedules."""

from meshkit.health.checker import HealthChecker
from meshkit.health.hysteresis import Hysteresis
from meshkit.health.probes import ProbeResult, http_probe, tcp_probe
from meshkit.health.watch import CheckRecord

__all__ = ["CheckRecord", "HealthChecker", "Hysteresis", "ProbeResult", "http_probe", "tcp_probe"]
