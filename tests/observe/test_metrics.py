"""Metrics: the series each observation makes, bounded labels, events, and promtool's verdict."""

from __future__ import annotations

import random
import shutil
import string
import subprocess

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from meshkit.clock import FakeClock
from meshkit.errors import CircuitOpen, ConnectError, RequestTimeout
from meshkit.events import BreakerTransition, Ejection, EventBus, HealthTransition, RetryAttempt
from meshkit.observe.metrics import MeshMetrics, MetricsLayer, retry_reason, status_class
from meshkit.outcome import Outcome
from meshkit.transport.mock import MockTransport
from meshkit.types import Request, Response, ServiceInstance


def value(m: MeshMetrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def metrics_with(*instances: ServiceInstance) -> MeshMetrics:
    m = MeshMetrics()
    m.sync_registry(instances)
    return m


ORDERS_1 = ServiceInstance("orders-1", "orders", "127.0.0.1", 8001)
ORDERS_2 = ServiceInstance("orders-2", "orders", "127.0.0.1", 8002)
USERS_1 = ServiceInstance("users-1", "users", "127.0.0.1", 9001)


def test_requests_latency_and_errors_per_known_service() -> None:
    m = metrics_with(ORDERS_1, USERS_1)
    m.observe_request("orders", 200, 0.02, method="GET", instance_id="orders-1")
    m.observe_request("orders", 503, 0.5, Outcome.SERVER_ERROR, method="POST", instance_id="orders-1")
    m.observe_request("users", None, 1.5, Outcome.TIMEOUT)
    assert value(m, "mesh_requests_total", service="orders", method="GET", status_class="2xx") == 1
    assert value(m, "mesh_requests_total", service="orders", method="POST", status_class="5xx") == 1
    assert value(m, "mesh_requests_total", service="users", method="GET", status_class="error") == 1
    assert value(m, "mesh_request_errors_total", service="orders", outcome="server_error") == 1
    assert value(m, "mesh_request_errors_total", service="users", outcome="timeout") == 1
    assert value(m, "mesh_request_errors_total", service="orders", outcome="timeout") is None
    assert value(m, "mesh_request_duration_seconds_count", service="orders", method="GET") == 1
    assert value(m, "mesh_request_duration_seconds_bucket", service="orders", method="GET", le="0.025") == 1
    assert value(m, "mesh_request_duration_seconds_bucket", service="orders", method="GET", le="0.01") == 0
    assert value(m, "mesh_request_duration_seconds_sum", service="users", method="GET") == 1.5
    assert value(m, "mesh_load_balancer_requests_total", service="orders", instance="orders-1") == 2
    assert value(m, "mesh_active_services") == 2
    assert value(m, "mesh_registered_instances") == 2


def test_unknown_services_methods_and_outcomes_collapse_into_other() -> None:
    m = metrics_with(ORDERS_1)
    m.observe_request("never-registered", 200, 0.01, method="BREW", instance_id="nope-1")
    m.observe_request("orders", 200, 0.01, "weird-outcome", instance_id="orders-9")
    assert value(m, "mesh_requests_total", service="other", method="other", status_class="2xx") == 1
    assert value(m, "mesh_request_errors_total", service="orders", outcome="other") == 1
    text = m.render()[0].decode()
    assert "never-registered" not in text and "BREW" not in text and "nope-1" not in text
    assert "orders-9" not in text  # an instance the registry does not know gets no series


def test_series_count_stays_bounded_after_10000_random_names() -> None:
    m = metrics_with(ORDERS_1, ORDERS_2, USERS_1)
    rng = random.Random(7)
    methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "X"]
    for _ in range(200):  # every label combination the known services can produce
        m.observe_request("orders", rng.choice([200, 301, 404, 503, None]), 0.01, method=rng.choice(methods))
    baseline_other = m.series_count()
    for i in range(10_000):
        name = "".join(rng.choices(string.ascii_lowercase, k=12))
        status = rng.choice([100, 200, 302, 404, 500, 503, 999, None])
        outcome = rng.choice([*Outcome, "rejected", name])
        m.observe_request(
            name, status, rng.random(), outcome, method=rng.choice(methods), instance_id=f"{name}-{i}"
        )
        m.on_event(RetryAttempt(name, 1, rng.choice(["ConnectError", f"status {status}", name]), 0.1))
        m.on_event(BreakerTransition(f"{name}-{i}", "closed", rng.choice(["open", name])))
        m.on_event(HealthTransition(f"{name}-{i}", name, "unknown", rng.choice(["healthy", name])))
    count = m.series_count()
    # "other" has at most 8 methods x 6 status classes of requests, 7 outcomes... a fixed cap:
    assert count < 2 * baseline_other + 600
    assert count == m.series_count()  # stable: more random names add nothing
    for _ in range(1000):
        m.observe_request("".join(rng.choices(string.ascii_lowercase, k=12)), 200, 0.1, method="GET")
    assert m.series_count() == count


def test_forgotten_services_and_instances_lose_their_series() -> None:
    m = metrics_with(ORDERS_1, ORDERS_2, USERS_1)
    m.observe_request("users", 200, 0.01, instance_id="users-1")
    m.on_event(BreakerTransition("orders-2", "closed", "open"))
    m.on_event(HealthTransition("orders-2", "orders", "unknown", "healthy"))
    assert value(m, "mesh_circuit_breaker_state", service="orders", instance="orders-2") == 1
    assert value(m, "mesh_health_check_status", service="orders", instance="orders-2") == 1
    m.sync_registry([ORDERS_1])  # users gone; orders-2 gone
    text = m.render()[0].decode()
    assert 'service="users"' not in text
    assert "orders-2" not in text
    assert value(m, "mesh_circuit_breaker_trips_total", service="orders", state="open") == 1  # service stays
    assert value(m, "mesh_active_services") == 1 and value(m, "mesh_registered_instances") == 1
    m.observe_request("users", 200, 0.01)
    assert value(m, "mesh_requests_total", service="other", method="GET", status_class="2xx") == 1


def test_events_from_the_bus_feed_breaker_retry_ejection_and_health_metrics() -> None:
    m = metrics_with(ORDERS_1, ORDERS_2)
    bus = EventBus()
    bus.subscribe(m.on_event)
    bus.emit(BreakerTransition("orders-1", "closed", "open"))
    bus.emit(BreakerTransition("orders-1", "open", "half-open"))
    assert value(m, "mesh_circuit_breaker_state", service="orders", instance="orders-1") == 2
    assert value(m, "mesh_circuit_breaker_trips_total", service="orders", state="open") == 1
    assert value(m, "mesh_circuit_breaker_trips_total", service="orders", state="half-open") == 1
    bus.emit(RetryAttempt("orders", 1, "ConnectError", 0.1))
    bus.emit(RetryAttempt("orders", 2, "status 503", 0.2))
    assert value(m, "mesh_retries_total", service="orders", reason="connect_error") == 1
    assert value(m, "mesh_retries_total", service="orders", reason="status_5xx") == 1
    bus.emit(Ejection("orders-1", "orders", 30.0, 1))
    bus.emit(Ejection("orders-2", "orders", 30.0, 1))
    bus.emit(Ejection("orders-1", "orders", 0.0, 1, ejected=False))
    assert value(m, "mesh_outlier_ejections_total", service="orders") == 2
    assert value(m, "mesh_outlier_ejected_instances", service="orders") == 1
    bus.emit(HealthTransition("orders-2", "orders", "healthy", "degraded"))
    assert value(m, "mesh_health_check_status", service="orders", instance="orders-2") == 0.5
    bus.emit(HealthTransition("orders-2", "orders", "degraded", "unhealthy"))
    assert value(m, "mesh_health_check_status", service="orders", instance="orders-2") == 0
    assert value(m, "mesh_health_transitions_total", service="orders", state="unhealthy") == 1
    m.observe_health_check("orders", ok=False)
    m.observe_discovery("register", ok=True)
    assert value(m, "mesh_health_checks_total", service="orders", result="fail") == 1
    assert value(m, "mesh_service_discovery_total", operation="register", status="success") == 1


async def test_layer_records_one_observation_per_call() -> None:
    m = metrics_with(ORDERS_1)
    clock = FakeClock()

    async def handler(request: Request) -> Response:
        clock.advance(0.2)
        if request.path == "/boom":
            raise ConnectError("refused", "orders-1")
        if request.path == "/open":
            raise CircuitOpen("orders-1")
        if request.path == "/slow":
            raise RequestTimeout("slow", "orders-1")
        return Response(200 if request.path == "/" else 500)

    transport = MockTransport(handler)

    async def pick(request: Request) -> Response:
        request.instance = ORDERS_1
        return await transport(request)

    layer = MetricsLayer(pick, metrics=m, clock=clock)  # type: ignore[arg-type]
    assert (await layer(Request("GET", "/", service="orders"))).status == 200
    assert (await layer(Request("POST", "/err", service="orders"))).status == 500
    for path, exc in (("/boom", ConnectError), ("/open", CircuitOpen), ("/slow", RequestTimeout)):
        with pytest.raises(exc):
            await layer(Request("GET", path, service="orders"))
    assert value(m, "mesh_requests_total", service="orders", method="GET", status_class="2xx") == 1
    assert value(m, "mesh_requests_total", service="orders", method="POST", status_class="5xx") == 1
    assert value(m, "mesh_requests_total", service="orders", method="GET", status_class="error") == 3
    assert value(m, "mesh_request_errors_total", service="orders", outcome="connect_error") == 1
    assert value(m, "mesh_request_errors_total", service="orders", outcome="rejected") == 1
    assert value(m, "mesh_request_errors_total", service="orders", outcome="timeout") == 1
    assert value(m, "mesh_request_errors_total", service="orders", outcome="server_error") == 1
    assert value(m, "mesh_request_duration_seconds_sum", service="orders", method="GET") == pytest.approx(0.8)
    assert value(m, "mesh_load_balancer_requests_total", service="orders", instance="orders-1") == 2


def test_render_is_valid_prometheus_text_and_keeps_the_seed_names() -> None:
    m = metrics_with(ORDERS_1)
    m.observe_request("orders", 200, 0.01, instance_id="orders-1")
    m.on_event(BreakerTransition("orders-1", "closed", "open"))
    m.on_event(HealthTransition("orders-1", "orders", "unknown", "healthy"))
    m.observe_discovery("discover", ok=False)
    body, content_type = m.render()
    assert content_type.startswith("text/plain; version=0.0.4")
    names = {f.name for f in text_string_to_metric_families(body.decode())}
    seed = {
        "mesh_request_duration_seconds",
        "mesh_load_balancer_requests",
        "mesh_circuit_breaker_trips",
        "mesh_active_services",
        "mesh_health_check_status",
        "mesh_service_discovery",
    }
    assert seed <= names


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_accepts_the_exposition() -> None:
    m = metrics_with(ORDERS_1, USERS_1)
    rng = random.Random(3)
    for _ in range(100):
        m.observe_request(
            rng.choice(["orders", "users", "zzz"]), rng.choice([200, 404, 503, None]), rng.random()
        )
    m.on_event(BreakerTransition("orders-1", "closed", "open"))
    m.on_event(RetryAttempt("users", 1, "RequestTimeout", 0.1))
    m.on_event(Ejection("users-1", "users", 30.0, 1))
    m.on_event(HealthTransition("users-1", "users", "unknown", "degraded"))
    body, _ = m.render()
    result = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, timeout=30)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert result.stdout.strip() == b"" and result.stderr.strip() == b""  # no lint warnings either


def test_uses_its_own_registry() -> None:
    registry = CollectorRegistry()
    a = MeshMetrics(registry)
    b = MeshMetrics()  # a second instance does not clash: nothing goes to the global registry
    a.observe_request("x", 200, 0.1)
    assert b"mesh_requests_total" in generate_latest(registry)
    assert b.registry is not registry


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match=r"^max_services: must be an integer >= 1"):
        MeshMetrics(max_services=0)


def test_label_helpers() -> None:
    assert [status_class(s) for s in (101, 204, 302, 404, 599, 600, None, 42)] == [
        "1xx",
        "2xx",
        "3xx",
        "4xx",
        "5xx",
        "error",
        "error",
        "error",
    ]
    assert retry_reason("CircuitOpen") == "circuit_open"
    assert retry_reason("status 429") == "status_4xx"
    assert retry_reason("something else") == "other"
