"""Alert rules: the seed's thresholds and the traffic ones, the tracker, and Prometheus rules
checked and unit-tested by the real promtool."""

from __future__ import annotations

import shutil
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest

from meshkit.plane.alerts import AlertRules, AlertTracker, evaluate, prometheus_rules
from meshkit.plane.alerts.__main__ import main as alerts_main

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
NOW = 1_700_000_000.0


def service(healthy: int, total: int, breakers: tuple[str, ...] = ()) -> dict[str, Any]:
    states = ["healthy"] * healthy + ["unhealthy"] * (total - healthy)
    return {
        "instances": [
            {"id": f"i{n}", "state": s, "circuit_breaker": breakers[n] if n < len(breakers) else "closed"}
            for n, s in enumerate(states)
        ],
        "total": total,
        "healthy": healthy,
    }


def health(score: float, total: int = 10) -> dict[str, Any]:
    return {"health_score": score, "total_instances": total}


def names(alerts: list[Any]) -> list[tuple[str, str | None, str]]:
    return [(a.name, a.service, a.severity) for a in alerts]


def test_defaults_are_the_seeds_thresholds_plus_error_rate_and_p99() -> None:
    rules = AlertRules()
    assert (rules.service_healthy_ratio, rules.service_degraded_ratio) == (0.8, 0.5)
    assert (rules.mesh_critical_below, rules.mesh_warning_below) == (50.0, 80.0)
    assert (rules.error_rate, rules.p99_ms, rules.breaker_open_warns) == (0.05, 1000.0, True)


@pytest.mark.parametrize(
    ("healthy", "total", "status"),
    [
        (5, 5, "healthy"),
        (4, 5, "healthy"),
        (3, 5, "degraded"),
        (1, 2, "degraded"),
        (2, 5, "unhealthy"),
        (0, 3, "unhealthy"),
    ],
)
def test_service_status_follows_the_healthy_ratio(healthy: int, total: int, status: str) -> None:
    assert AlertRules().service_status(healthy, total) == status


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("service_healthy_ratio", 1.5),
        ("service_degraded_ratio", 0.9),  # above the healthy ratio
        ("mesh_critical_below", 90.0),  # above the warning level
        ("mesh_warning_below", -1),
        ("error_rate", float("nan")),
        ("p99_ms", True),
        ("min_requests", 0),
        ("breaker_open_warns", "yes"),
    ],
)
def test_bad_thresholds_raise_naming_the_field(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=f"^{field}: must be"):
        AlertRules(**{field: value})


def test_services_down_degraded_and_open_breakers() -> None:
    topology = {
        "services": {
            "ok": service(2, 2),
            "half": service(1, 2),
            "down": service(0, 1),
            "tripped": service(3, 3, breakers=("closed", "open")),
            "empty": {"instances": [], "total": 0, "healthy": 0},
        }
    }
    alerts = evaluate(AlertRules(), topology, health(0.9), {}, NOW)
    assert names(alerts) == [
        ("ServiceDown", "down", "critical"),
        ("ServiceDegraded", "half", "warning"),
        ("CircuitBreakerOpen", "tripped", "warning"),
    ]
    assert alerts[2].instance == "i1" and all(a.since == NOW for a in alerts)
    quiet = evaluate(AlertRules(breaker_open_warns=False), topology, health(0.9), {}, NOW)
    assert "CircuitBreakerOpen" not in [a.name for a in quiet]


@pytest.mark.parametrize(
    ("score", "expected"),
    [(0.49, "MeshHealthCritical"), (0.5, "MeshHealthLow"), (0.79, "MeshHealthLow"), (0.8, None)],
)
def test_mesh_health_levels(score: float, expected: str | None) -> None:
    alerts = evaluate(AlertRules(), {"services": {}}, health(score), {}, NOW)
    assert [a.name for a in alerts] == ([expected] if expected else [])


def test_an_empty_mesh_raises_no_health_alert() -> None:
    assert evaluate(AlertRules(), {"services": {}}, health(0.0, total=0), {}, NOW) == []


def test_error_rate_and_p99_thresholds_are_configurable() -> None:
    stats = {
        "slow": {"requests": 50, "error_rate": 0.0, "p99_ms": 1500.0},
        "failing": {"requests": 50, "error_rate": 0.2, "p99_ms": 10.0},
        "edge": {"requests": 50, "error_rate": 0.05, "p99_ms": 1000.0},  # at the threshold: fine
        "rare": {"requests": 2, "error_rate": 1.0, "p99_ms": 5000.0},
    }
    topo = {"services": {}}
    alerts = evaluate(AlertRules(min_requests=3), topo, health(1.0), stats, NOW)
    assert names(alerts) == [("HighErrorRate", "failing", "warning"), ("HighLatency", "slow", "warning")]
    assert alerts[0].value == 0.2 and "20.0%" in alerts[0].message
    strict = evaluate(AlertRules(error_rate=0.01, p99_ms=5.0), topo, health(1.0), stats, NOW)
    assert len(strict) == 7  # all but `slow` (no errors) break both; `rare` counts with min_requests=1


def test_tracker_keeps_since_while_firing_and_records_resolutions() -> None:
    tracker = AlertTracker()
    topo = {"services": {"db": service(0, 1)}}
    first = tracker.update(evaluate(AlertRules(), topo, health(1.0), {}, NOW), NOW)
    later = tracker.update(evaluate(AlertRules(), topo, health(1.0), {}, NOW + 30), NOW + 30)
    assert [a.since for a in first] == [a.since for a in later] == [NOW]
    assert tracker.update([], NOW + 60) == []
    assert [(r.alert.name, r.resolved_at) for r in tracker.resolved] == [("ServiceDown", NOW + 60)]
    again = tracker.update(evaluate(AlertRules(), topo, health(1.0), {}, NOW + 90), NOW + 90)
    assert [a.since for a in again] == [NOW + 90]  # a new episode starts a new `since`
    with pytest.raises(ValueError, match=r"^keep_resolved: must be"):
        AlertTracker(keep_resolved=-1)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60, check=False)


def test_prometheus_rules_pass_promtool_check(tmp_path: Path) -> None:
    path = tmp_path / "rules.yml"
    path.write_text(prometheus_rules(AlertRules(error_rate=0.1, p99_ms=250.0), for_="2m", window="10m"))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 7 rules found" in result.stdout
    text = path.read_text()
    assert "> 0.1)" in text and "> 0.25)" in text and "[10m]" in text and "for: 2m" in text


def test_prometheus_rules_fire_on_the_conditions_the_dashboard_alerts_on(tmp_path: Path) -> None:
    (tmp_path / "rules.yml").write_text(prometheus_rules(for_="1m"))
    (tmp_path / "test.yml").write_text(
        textwrap.dedent(
            """\
            rule_files: [rules.yml]
            evaluation_interval: 1m
            tests:
              - interval: 1m
                input_series:
                  - series: 'mesh_health_check_status{service="db", instance="db-1"}'
                    values: '0x10'
                  - series: 'mesh_health_check_status{service="api", instance="api-1"}'
                    values: '1x10'
                  - series: 'mesh_health_check_status{service="api", instance="api-2"}'
                    values: '1x10'
                  - series: 'mesh_circuit_breaker_state{service="api", instance="api-2"}'
                    values: '1x10'
                  - series: 'mesh_requests_total{service="api", method="GET", status_class="2xx"}'
                    values: '0+120x10'
                  - series: 'mesh_request_errors_total{service="api", outcome="server_error"}'
                    values: '0+60x10'
                  - series: 'mesh_request_duration_seconds_bucket{service="api", method="GET", le="0.1"}'
                    values: '0+120x10'
                  - series: 'mesh_request_duration_seconds_bucket{service="api", method="GET", le="+Inf"}'
                    values: '0+120x10'
                alert_rule_test:
                  - eval_time: 5m
                    alertname: ServiceDown
                    exp_alerts:
                      - exp_labels: {severity: critical, service: db}
                        exp_annotations:
                          summary: db has no healthy instance
                          description: Every instance is failing its checks.
                  - eval_time: 5m
                    alertname: MeshHealthLow
                    exp_alerts:
                      - exp_labels: {severity: warning}
                        exp_annotations:
                          summary: Mesh health is low
                          description: 67% of instances are healthy.
                  - eval_time: 5m
                    alertname: CircuitBreakerOpen
                    exp_alerts:
                      - exp_labels: {severity: warning, service: api, instance: api-2}
                        exp_annotations:
                          summary: Circuit breaker open for api-2
                          description: Calls to api instance api-2 are failing fast.
                  - eval_time: 5m
                    alertname: HighErrorRate
                    exp_alerts:
                      - exp_labels: {severity: warning, service: api}
                        exp_annotations:
                          summary: api error rate is high
                          description: 50% of calls fail.
                  - eval_time: 5m
                    alertname: HighLatency
                    exp_alerts: []
                  - eval_time: 5m
                    alertname: ServiceDegraded
                    exp_alerts: []
            """
        )
    )
    result = promtool("test", "rules", str(tmp_path / "test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_bad_durations_raise_naming_the_field() -> None:
    with pytest.raises(ValueError, match=r"^for_: must be a Prometheus duration"):
        prometheus_rules(for_="one minute")
    with pytest.raises(ValueError, match=r"^window: must be"):
        prometheus_rules(window="")


def test_command_line_prints_rules_and_refuses_bad_thresholds(capsys: pytest.CaptureFixture[str]) -> None:
    assert alerts_main(["--prometheus-rules", "--error-rate", "0.2", "--no-breaker-open-warns"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("groups:") and "> 0.2)" in out and "CircuitBreakerOpen" not in out
    assert alerts_main(["--p99-ms", "-5"]) == 2
    assert capsys.readouterr().err.startswith("error: p99_ms: must be")
