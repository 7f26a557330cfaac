"""Prometheus metrics for the mesh, with label values bounded so series cannot explode.

Every label value comes from a closed set: services the registry knows (`set_known_services`,
anything else is counted as "other"), status classes ("2xx".."5xx", "error" when no response
came back), a fixed list of HTTP methods, outcome and retry-reason kinds. Per-instance series
(breaker state, health status, balancer picks) exist only for instances the registry knows and
are removed when it forgets them, so the series count has a fixed cap however many names and
paths callers send (Prometheus naming and cardinality guidance). The seed's metric names are
kept: mesh_request_duration_seconds, mesh_load_balancer_requests_total,
mesh_circuit_breaker_trips_total, mesh_active_services, mesh_health_check_status and
mesh_service_discovery_total. The metrics live in their own CollectorRegistry, not the global one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

from meshkit.clock import SYSTEM_CLOCK, Clock
from meshkit.events import BreakerTransition, Ejection, Event, HealthTransition, RetryAttempt
from meshkit.outcome import Outcome, classify
from meshkit.service import Service
from meshkit.types import Request, Response, ServiceInstance

log = logging.getLogger(__name__)

OTHER = "other"
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
OUTCOMES = frozenset({o.value for o in Outcome} | {"rejected"})  # rejected: breaker, no instance...
BREAKER_STATES = {"closed": 0.0, "open": 1.0, "half-open": 2.0}
HEALTH_VALUES = {"healthy": 1.0, "degraded": 0.5, "unhealthy": 0.0}  # the seed's encoding
RETRY_REASONS = {
    "ConnectError": "connect_error",
    "CircuitOpen": "circuit_open",
    "RequestTimeout": "timeout",
    "ConnectionReset": "reset",
}
DISCOVERY_OPERATIONS = frozenset({"connect", "register", "deregister", "discover", "watch"})
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # the text format every Prometheus reads
DEFAULT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

Child = Any  # a labelled prometheus_client metric


def status_class(status_code: int | None) -> str:
    if status_code is None or not 100 <= status_code <= 599:
        return "error"
    return STATUS_CLASSES[status_code // 100 - 1]


def retry_reason(reason: str) -> str:
    if reason.startswith("status "):
        return f"status_{status_class(int(reason[7:]) if reason[7:].isdigit() else None)}"
    return RETRY_REASONS.get(reason, OTHER)


class MeshMetrics:
    """The mesh's metrics: fed by `observe_request`, `on_event` and the registry, read by `render`."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        max_services: int = 1000,
        max_instances: int = 10000,
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> None:
        for name, value in (("max_services", max_services), ("max_instances", max_instances)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: must be an integer >= 1, got {value!r}")
        self.registry = registry if registry is not None else CollectorRegistry()
        self.max_services = max_services
        self.max_instances = max_instances
        r = self.registry
        svc = ["service"]
        self.requests = Counter(
            "mesh_requests", "Calls through the mesh", [*svc, "method", "status_class"], registry=r
        )
        self.errors = Counter(
            "mesh_request_errors", "Calls that failed, by outcome", [*svc, "outcome"], registry=r
        )
        self.duration = Histogram(
            "mesh_request_duration_seconds",
            "Request duration by service",
            [*svc, "method"],
            buckets=buckets,
            registry=r,
        )
        self.picks = Counter(
            "mesh_load_balancer_requests",
            "Load balancer request distribution",
            [*svc, "instance"],
            registry=r,
        )
        self.breaker_trips = Counter(
            "mesh_circuit_breaker_trips",
            "Circuit breaker state changes, by new state",
            [*svc, "state"],
            registry=r,
        )
        self.breaker_state = Gauge(
            "mesh_circuit_breaker_state",
            "Breaker state: 0 closed, 1 open, 2 half-open",
            [*svc, "instance"],
            registry=r,
        )
        self.retries = Counter("mesh_retries", "Retries, by reason", [*svc, "reason"], registry=r)
        self.ejections = Counter("mesh_outlier_ejections", "Outlier ejections", svc, registry=r)
        self.ejected = Gauge("mesh_outlier_ejected_instances", "Instances ejected now", svc, registry=r)
        self.active_services = Gauge("mesh_active_services", "Number of registered services", registry=r)
        self.registered_instances = Gauge(
            "mesh_registered_instances", "Number of registered instances", registry=r
        )
        self.health_status = Gauge(
            "mesh_health_check_status",
            "Health: 1 healthy, 0.5 degraded, 0 unhealthy",
            [*svc, "instance"],
            registry=r,
        )
        self.health_checks = Counter(
            "mesh_health_checks", "Health-check results", [*svc, "result"], registry=r
        )
        self.health_transitions = Counter(
            "mesh_health_transitions", "Health-state changes, by new state", [*svc, "state"], registry=r
        )
        self.discovery = Counter(
            "mesh_service_discovery", "Service discovery operations", ["operation", "status"], registry=r
        )
        self._known: frozenset[str] = frozenset()
        self._instances: dict[str, str] = {}  # known instance id -> service
        self._series: dict[str, set[tuple[Any, tuple[str, ...]]]] = {}  # service -> labelled series
        self._request_cache: dict[tuple[str, str, str], tuple[Child, Child]] = {}
        self._error_cache: dict[tuple[str, str], Child] = {}
        self._ejected: dict[str, int] = {}
        self._pick_cache: dict[str, Child] = {}  # instance id -> balancer-picks child

    # -- label bounding ------------------------------------------------------------------

    def is_known(self, service: str) -> bool:
        return service in self._known

    def _service(self, service: str) -> str:
        return service if service in self._known else OTHER

    def _labelled(self, metric: Any, service: str, *rest: str) -> Child:
        self._series.setdefault(service, set()).add((metric, (service, *rest)))
        return metric.labels(service, *rest)

    def _drop_series(self, keep: Callable[[Any, tuple[str, ...]], bool]) -> None:
        for service in list(self._series):
            series = self._series[service]
            for metric, labels in list(series):
                if not keep(metric, labels):
                    metric.remove(*labels)
                    series.discard((metric, labels))
            if not series:
                del self._series[service]

    def set_known_services(self, names: Iterable[str]) -> None:
        """The services whose names may be label values; series of services gone are removed."""
        wanted = sorted(set(names))
        if len(wanted) > self.max_services:
            log.warning(
                "metrics: %d services registered, over max_services=%d; the rest are counted as %r",
                len(wanted),
                self.max_services,
                OTHER,
            )
            wanted = wanted[: self.max_services]
        known = frozenset(wanted)
        if known == self._known:
            return
        self._known = known
        self._drop_series(lambda metric, labels: labels[0] == OTHER or labels[0] in known)
        self._request_cache = {k: v for k, v in self._request_cache.items() if k[0] == OTHER or k[0] in known}
        self._error_cache = {k: v for k, v in self._error_cache.items() if k[0] == OTHER or k[0] in known}
        self._ejected = {k: v for k, v in self._ejected.items() if k == OTHER or k in known}
        self._pick_cache.clear()

    def set_known_instances(self, instances: Mapping[str, str]) -> None:
        """Known instance ids (-> service name); per-instance series of forgotten ones are removed."""
        kept = dict(sorted(instances.items())[: self.max_instances])
        self._instances = kept
        self._pick_cache.clear()
        per_instance = (self.picks, self.breaker_state, self.health_status)
        self._drop_series(
            lambda metric, labels: metric not in per_instance or kept.get(labels[1]) == labels[0]
        )

    def set_registry_size(self, services: int, instances: int) -> None:
        self.active_services.set(services)
        self.registered_instances.set(instances)

    def sync_registry(self, instances: Iterable[ServiceInstance]) -> None:
        """Everything the registry tells metrics, in one call: known names, ids and sizes."""
        listed = list(instances)
        names = {i.service_name for i in listed}
        self.set_known_services(names)
        self.set_known_instances({i.id: i.service_name for i in listed})
        self.set_registry_size(len(names), len(listed))

    # -- observations --------------------------------------------------------------------

    def observe_request(
        self,
        service: str,
        status_code: int | None,
        duration_s: float,
        outcome: Outcome | str = Outcome.SUCCESS,
        *,
        method: str = "GET",
        instance_id: str | None = None,
    ) -> None:
        """Count one call (once, however many attempts it took) and observe its duration."""
        svc = service if service in self._known else OTHER
        key = (svc, method if method in METHODS else OTHER, status_class(status_code))
        pair = self._request_cache.get(key)
        if pair is None:
            pair = (self._labelled(self.requests, *key), self._labelled(self.duration, key[0], key[1]))
            self._request_cache[key] = pair
        pair[0].inc()
        pair[1].observe(duration_s)
        if outcome != Outcome.SUCCESS:
            ekey = (svc, outcome if outcome in OUTCOMES else OTHER)
            child = self._error_cache.get(ekey)
            if child is None:
                child = self._error_cache[ekey] = self._labelled(self.errors, *ekey)
            child.inc()
        if instance_id is not None:
            pick = self._pick_cache.get(instance_id)
            if pick is None and self._instances.get(instance_id) == svc and svc != OTHER:
                pick = self._pick_cache[instance_id] = self._labelled(self.picks, svc, instance_id)
            if pick is not None:
                pick.inc()

    def observe_health_check(self, service: str, ok: bool) -> None:
        self._labelled(self.health_checks, self._service(service), "pass" if ok else "fail").inc()

    def observe_discovery(self, operation: str, ok: bool) -> None:
        op = operation if operation in DISCOVERY_OPERATIONS else OTHER
        self.discovery.labels(op, "success" if ok else "failure").inc()

    def on_event(self, event: Event) -> None:
        """Subscriber for `meshkit.events.EventBus`: breakers, retries, ejections, health."""
        if isinstance(event, BreakerTransition):
            service = self._instances.get(event.instance_id, OTHER)
            state = event.new if event.new in BREAKER_STATES else OTHER
            self._labelled(self.breaker_trips, service, state).inc()
            if service != OTHER and state != OTHER:
                self._labelled(self.breaker_state, service, event.instance_id).set(BREAKER_STATES[state])
        elif isinstance(event, RetryAttempt):
            self._labelled(self.retries, self._service(event.service_name), retry_reason(event.reason)).inc()
        elif isinstance(event, Ejection):
            service = self._service(event.service_name)
            count = max(0, self._ejected.get(service, 0) + (1 if event.ejected else -1))
            self._ejected[service] = count
            self._labelled(self.ejected, service).set(count)
            if event.ejected:
                self._labelled(self.ejections, service).inc()
        elif isinstance(event, HealthTransition):
            service = self._service(event.service_name)
            state = event.new if event.new in HEALTH_VALUES else OTHER
            self._labelled(self.health_transitions, service, state).inc()
            if self._instances.get(event.instance_id) == service and service != OTHER:
                if state in HEALTH_VALUES:
                    self._labelled(self.health_status, service, event.instance_id).set(HEALTH_VALUES[state])
                else:
                    self._forget_series(self.health_status, (service, event.instance_id))

    def _forget_series(self, metric: Any, labels: tuple[str, ...]) -> None:
        series = self._series.get(labels[0])
        if series is not None and (metric, labels) in series:
            series.discard((metric, labels))
            metric.remove(*labels)

    def series_count(self) -> int:
        """How many samples a scrape returns now (what the cardinality cap bounds)."""
        return sum(len(m.samples) for m in self.registry.collect())

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition and its content type, for `GET /metrics`."""
        return generate_latest(self.registry), CONTENT_TYPE


class MetricsLayer:
    """Client-stack layer (outermost, above retry): one observation per call, not per attempt."""

    __slots__ = ("clock", "inner", "metrics")

    def __init__(self, inner: Service, *, metrics: MeshMetrics, clock: Clock = SYSTEM_CLOCK) -> None:
        self.inner = inner
        self.metrics = metrics
        self.clock = clock

    async def __call__(self, request: Request) -> Response:
        start = self.clock.monotonic()
        try:
            response = await self.inner(request)
        except Exception as exc:
            outcome = classify(exc)
            self.metrics.observe_request(
                request.service,
                None,
                self.clock.monotonic() - start,
                outcome if outcome.failed else "rejected",
                method=request.method,
            )
            raise
        instance = response.instance
        self.metrics.observe_request(
            request.service,
            response.status,
            self.clock.monotonic() - start,
            Outcome.SERVER_ERROR if response.status >= 500 else Outcome.SUCCESS,
            method=request.method,
            instance_id=instance.service_id if instance is not None else None,
        )
        return response
