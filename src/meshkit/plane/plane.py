"""`ControlPlane`: every behaviour of `meshkit serve` in one object; the REST API is its shell.

It holds a `ServiceMesh` (registry, cache, client) whose `/call` stack is hardened for
forwarding (`meshkit.plane.calls`), the health checker with the plane's default check,
the settings file, the tokens, Prometheus metrics, the trace collector and the legacy
Redis queue. Each API route is one call here with plain values; every decision (who may
do what, which settings apply, what a response looks like) is made here. Errors are
exceptions the shell maps to statuses: ValueError 422, `Unauthenticated` 401,
`Forbidden` 403, `NotFound` 404, `Conflict` 409, `RegistryUnavailable` and the queue's and
mesh's failures 503 (see `meshkit.plane.api.errors`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Mapping
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from meshkit.clock import SYSTEM_CLOCK, Clock
from meshkit.errors import RegistryUnavailable
from meshkit.mesh import ServiceMesh, ServiceRequest
from meshkit.observe.metrics import MeshMetrics
from meshkit.observe.tracing import Tracer
from meshkit.plane.auth import Forbidden, Principal, TokenStore, Unauthenticated
from meshkit.plane.calls import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_RESPONSE_BYTES,
    check_method,
    check_path,
    guarded_transport,
    harden,
    outgoing_headers,
    safe_result,
)
from meshkit.plane.checks import DefaultCheckSync
from meshkit.plane.collector import CollectorSpanExporter, OtlpReply, SpanStore, TraceCollector
from meshkit.plane.inputs import describe_registry, encode_body, metadata_strings, parse_check
from meshkit.plane.legacy import LegacyQueue, QueueUnavailable
from meshkit.plane.owners import KeyedLock, owner_of, stamp_owner
from meshkit.plane.problems import Conflict, NotFound
from meshkit.plane.settings import (
    BreakerSettings,
    HealthCheckSettings,
    PlaneSettings,
    RetrySettings,
    SettingsFile,
)
from meshkit.plane.ssrf import check_address
from meshkit.plane.views import discover_view, health_view, instance_view
from meshkit.registry.base import Registry
from meshkit.registry.cache import FAILURES
from meshkit.resilience.retry import RetryLayer
from meshkit.types import HealthCheck, LoadBalancerStrategy, ServiceInstance, validate_service_name

log = logging.getLogger(__name__)
PLANE_SERVICE_NAME = "meshkit-plane"
TRACES_FILE = "traces.sqlite3"
MAX_WINDOW = 366 * 86400.0  # the dependency graph's longest look-back


class ControlPlane:
    def __init__(
        self,
        *,
        data_dir: str | Path | None = None,
        registry: Registry | str | None = None,
        redis_url: str | None = None,
        public_read: bool = False,
        admin_token: str | None = None,
        health_checks: bool = True,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
        trace_sample_ratio: float = 1.0,
    ) -> None:
        ratio = trace_sample_ratio  # checked before anything is opened or started
        if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0.0 <= ratio <= 1.0:
            raise ValueError(f"trace_sample_ratio: must be a number in [0, 1], got {ratio!r}")
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.public_read = public_read
        self.max_body_bytes = max_body_bytes
        self.clock = clock
        self.tokens = TokenStore(self.data_dir, env_admin_token=admin_token)
        self.settings_file = SettingsFile(self.data_dir)
        self.settings = self.settings_file.load()
        self.metrics = MeshMetrics()
        traces = self.data_dir / TRACES_FILE if self.data_dir is not None else None
        self.collector = TraceCollector(SpanStore(traces, clock=clock))
        # the calls it forwards (/call): new traces kept at this ratio, a caller's decision followed
        self.tracer = Tracer(
            PLANE_SERVICE_NAME, sample_ratio=ratio, exporters=[CollectorSpanExporter(self.collector)]
        )
        self.mesh = ServiceMesh(
            load_balancer_strategy=self.settings.strategy,
            registry=registry,
            data_dir=self.data_dir,
            health_checks=False,
            address_policy=check_address,
            tracer=self.tracer,
            transport=guarded_transport(max_response_bytes),
            clock=clock,
            rng=rng,
            breaker=self.settings.circuit_breaker.policy(),
            retry=self.settings.retry.policy(),
        )
        self.checks: DefaultCheckSync | None = None
        if health_checks:
            default = self.settings.health_check.check()
            self.checks = DefaultCheckSync(
                self.mesh.backend,
                default=default,
                leadership=self.mesh.health_leadership(),  # several planes on one etcd: only the elected one probes
                bus=self.mesh.bus,
                clock=clock,
                rng=self.mesh.rng,
            )
            self.mesh.health = self.checks
        client = self.mesh.client
        harden(client, tracer=self.tracer, metrics=self.metrics, max_body_bytes=max_body_bytes)
        self._unsubscribe = self.mesh.bus.subscribe(self.metrics.on_event)
        self.queue = LegacyQueue(redis_url) if redis_url else None
        self.registry_description = describe_registry(registry, self.data_dir)
        self._locks = KeyedLock()
        self._configure_lock = asyncio.Lock()
        self._known_services: frozenset[str] = frozenset()
        self._follower: asyncio.Task[None] | None = None
        self.started = False

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        if self.started:
            return
        await asyncio.to_thread(self.tokens.ensure_admin_token)
        await self.mesh.initialize()
        self._on_registry(await self.mesh.backend.all_instances())
        self._follower = asyncio.create_task(self._follow_registry(), name="meshkit-plane-registry")
        self.started = True

    async def close(self) -> None:
        if not self.started:
            return
        self.started = False
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
        await self.mesh.shutdown()
        if self.queue is not None:
            await self.queue.aclose()
        await asyncio.to_thread(self.tracer.shutdown)  # flushes the plane's spans into the collector
        await self.collector.close()

    async def _follow_registry(self) -> None:
        """Keep metrics' registry size and known names current, and forget breakers of gone instances."""
        while True:
            try:
                async for snap in self.mesh.backend.watch(None):
                    self._on_registry(snap.instances)
                return
            except FAILURES as exc:
                log.warning("plane: registry watch failed, retrying: %s", exc)
                await self.clock.sleep(1.0)

    def _on_registry(self, instances: Any) -> None:
        listed: list[ServiceInstance] = list(instances)
        self.metrics.sync_registry(listed)
        self._known_services = frozenset(i.service_name for i in listed)
        ids = {i.service_id for i in listed}
        breakers = self.mesh.client.parts.breakers
        for gone in [iid for iid in breakers.states() if iid not in ids]:
            breakers.forget(gone)

    # -- auth ------------------------------------------------------------------------------

    def authenticate(self, authorization: str | None) -> Principal:
        """The caller behind an `Authorization` header, or `Unauthenticated` (401)."""
        return self.tokens.require(authorization)

    def authorize_read(self, authorization: str | None) -> Principal | None:
        """Read-only endpoints: open with --public-read, else any valid token."""
        return None if self.public_read else self.authenticate(authorization)

    @staticmethod
    def require_admin(principal: Principal) -> None:
        if not principal.is_admin:
            raise Forbidden(f"token {principal.name!r} may not do this: it needs the admin token")

    # -- registry --------------------------------------------------------------------------

    async def register(
        self,
        principal: Principal,
        *,
        service_name: str,
        address: str,
        port: int,
        tags: list[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        service_id: str | None = None,
        weight: int = 100,
        zone: str = "",
        version: str = "",
        check: HealthCheck | Mapping[str, Any] | None = None,
        ttl: float | None = None,
    ) -> dict[str, Any]:
        validate_service_name(service_name)
        principal.require_manage(service_name)
        meta = stamp_owner(metadata_strings(metadata), principal)
        sid = service_id or f"{service_name}-{address}-{port}"
        async with self._locks.hold(sid):
            existing = await self.mesh.registry.get(sid)
            if existing is not None:
                principal.require_manage(existing.service_name, owner_of(existing))
            try:
                inst = await self.mesh.register_service(
                    service_name, address, port, list(tags or []), meta, service_id=sid,
                    weight=weight, zone=zone, version=version, check=parse_check(check), ttl=ttl,
                )  # fmt: skip
            except RegistryUnavailable:
                self.metrics.observe_discovery("register", False)
                raise
        self.metrics.observe_discovery("register", True)
        message = f"Service {service_name} registered successfully"
        return {"service_id": inst.service_id, "status": "registered", "message": message}

    async def _owned(self, principal: Principal, service_id: str) -> ServiceInstance:
        existing = await self.mesh.registry.get(service_id)
        if existing is None:
            raise NotFound(f"service_id: no instance {service_id!r} is registered")
        principal.require_manage(existing.service_name, owner_of(existing))
        return existing

    async def deregister(self, principal: Principal, service_id: str) -> dict[str, Any]:
        async with self._locks.hold(service_id):
            await self._owned(principal, service_id)
            removed = await self.mesh.deregister_service(service_id)
        self.metrics.observe_discovery("deregister", removed)
        if not removed:
            raise NotFound(f"service_id: no instance {service_id!r} is registered")
        return {"status": "deregistered", "message": f"Service {service_id} deregistered successfully"}

    async def heartbeat(self, principal: Principal, service_id: str) -> dict[str, Any]:
        existing = await self._owned(principal, service_id)
        ttl_check = existing.check is not None and existing.check.kind == "ttl"
        try:  # a TTL check's pass goes to the elected plane's checker, wherever that is
            await self.mesh.heartbeat(service_id, ttl_check=True if ttl_check else None)
        except KeyError:  # UnknownInstance: it expired meanwhile
            raise NotFound(f"service_id: no instance {service_id!r} is registered") from None
        return {"status": "ok", "service_id": service_id}

    async def discover(self, service_name: str, use_cache: bool = True) -> dict[str, Any]:
        validate_service_name(service_name)
        if service_name not in self._known_services:
            # Not worth a cache entry (and a watch) per name a caller makes up: ask the backend once.
            try:
                snap = await self.mesh.backend.instances(service_name)
            except FAILURES:
                snap = None
            if snap is not None and not snap.instances:
                self.metrics.observe_discovery("discover", True)
                return discover_view(service_name, snap)
        try:
            snap = await self.mesh.discover(service_name, use_cache)
        except FAILURES:
            self.metrics.observe_discovery("discover", False)
            raise
        self.metrics.observe_discovery("discover", True)
        return discover_view(service_name, snap)

    async def instance(self, service_id: str) -> dict[str, Any]:
        inst = await self.mesh.registry.get(service_id)
        if inst is None:
            raise NotFound(f"service_id: no instance {service_id!r} is registered")
        checker = self.checks.checker if self.checks is not None else None
        watched = checker is not None and service_id in checker
        parts = self.mesh.client.parts
        breaker = parts.breakers.get(service_id).state.value if service_id in parts.breakers else "closed"
        return instance_view(
            inst,
            effective_check=inst.check or (self.checks.default if self.checks is not None else None),
            breaker=breaker,
            connections=parts.load.in_flight(service_id),
            checks=checker.history(service_id) if checker is not None and watched else [],
            transitions=checker.transitions(service_id) if checker is not None and watched else [],
        )

    async def topology(self) -> dict[str, Any]:
        return await self.mesh.get_service_topology()

    async def registry_connected(self) -> bool:
        try:
            await self.mesh.backend.services()
        except FAILURES:
            return False
        return True

    async def health(self, detailed: bool = True) -> dict[str, Any]:
        view = health_view(await self.mesh.get_service_topology(), await self.registry_connected())
        return view if detailed else {"status": view["status"]}

    async def health_for(self, authorization: str | None) -> dict[str, Any]:
        """Readiness for anyone (always an answer); the figures only for those who may read."""
        try:
            self.authorize_read(authorization)
        except Unauthenticated:
            return await self.health(detailed=False)
        return await self.health()

    # -- calls -----------------------------------------------------------------------------

    async def call(
        self,
        principal: Principal,
        *,
        service_name: str,
        method: str = "GET",
        path: str = "/",
        headers: Mapping[str, str] | None = None,
        body: Any = None,
        timeout: float = 30.0,  # noqa: ASYNC109 (the seed's field: the whole call's deadline)
        retry_count: int | None = None,
        request_headers: Mapping[str, str] | None = None,
        caller_token: str | None = None,
        client_address: str | None = None,
    ) -> dict[str, Any]:
        """Forward one call through the mesh: the seed's `{status_code, headers, body, instance_id,
        trace_id, duration}`; an upstream 5xx is a result, not an error (as the seed answered)."""
        validate_service_name(service_name)
        fwd = outgoing_headers(headers or {}, request_headers or {}, caller_token=caller_token)
        data = encode_body(body, self.max_body_bytes)
        if data is not None and not isinstance(body, str) and "content-type" not in {k.lower() for k in fwd}:
            fwd["Content-Type"] = "application/json"
        attempts = self.settings.retry.max_attempts - 1 if retry_count is None else retry_count
        request = ServiceRequest(
            service_name, check_method(method), check_path(path), fwd, data, timeout, attempts, client_address
        )
        result = safe_result(await self.mesh.call_service(request))
        result["instance_id"] = result.get("instance_id") or ""
        result["trace_id"] = result.get("trace_id") or ""
        return result

    # -- settings --------------------------------------------------------------------------

    async def _save(self, settings: PlaneSettings) -> None:
        await asyncio.to_thread(self.settings_file.save, settings)
        self.settings = settings

    async def configure_load_balancer(self, strategy: str) -> dict[str, Any]:
        parsed = LoadBalancerStrategy.parse(strategy)
        async with self._configure_lock:
            await self._save(replace(self.settings, strategy=parsed))
            self.mesh.client.set_strategy(parsed)
        return {"status": "configured", "strategy": parsed.value}

    async def configure_circuit_breaker(
        self, failure_threshold: int, recovery_timeout: int
    ) -> dict[str, Any]:
        breaker = BreakerSettings(failure_threshold, recovery_timeout)
        async with self._configure_lock:
            await self._save(replace(self.settings, circuit_breaker=breaker))
            self.mesh.client.configure_breaker(breaker.policy())
        return {"status": "configured", **self.settings.as_dict()["circuit_breaker"]}

    async def configure_retry(self, **values: Any) -> dict[str, Any]:
        retry = RetrySettings(**values)
        parts = self.mesh.client.parts
        layer = partial(
            RetryLayer,
            policy=retry.policy(),
            budget=parts.budget,
            clock=parts.clock,
            rng=parts.rng,
            bus=parts.bus,
        )
        async with self._configure_lock:
            await self._save(replace(self.settings, retry=retry))
            self.mesh.client.stack.replace("retry", layer)
        return {"status": "configured", **self.settings.as_dict()["retry"]}

    async def configure_health_check(self, **values: Any) -> dict[str, Any]:
        health = HealthCheckSettings(**values)
        async with self._configure_lock:
            await self._save(replace(self.settings, health_check=health))
            if self.checks is not None:
                await self.checks.set_default(health.check())
        return {"status": "configured", **self.settings.as_dict()["health_check"]}

    def config(self) -> dict[str, Any]:
        return self.settings.as_dict()

    # -- metrics, queue, tokens, traces ----------------------------------------------------

    def metrics_text(self) -> tuple[bytes, str]:
        return self.metrics.render()

    def queue_provider(self) -> LegacyQueue:
        if self.queue is None:
            raise QueueUnavailable(
                "legacy queue unavailable: no Redis configured (start with --redis-url or MESHKIT_REDIS_URL)"
            )
        return self.queue

    async def enqueue(self, topic: str, task: dict[str, Any]) -> dict[str, Any]:
        msg_id = await self.queue_provider().enqueue(topic, task)
        return {"id": msg_id, "message": "Task enqueued through service mesh"}

    async def results(self, topic: str, count: int = 10) -> list[dict[str, Any]]:
        return await self.queue_provider().results(topic, count)

    async def create_token(self, name: str, services: list[str]) -> dict[str, Any]:
        if any(t["name"] == name for t in self.tokens.list()):
            raise Conflict(f"name: a token named {name!r} already exists; revoke it first")
        token = await asyncio.to_thread(self.tokens.create_service_token, services, name)
        return {"name": name, "token": token, "services": sorted(set(services))}

    def list_tokens(self) -> list[dict[str, Any]]:
        return self.tokens.list()

    async def revoke_token(self, name: str) -> dict[str, Any]:
        if not await asyncio.to_thread(self.tokens.revoke, name):
            raise NotFound(f"name: no token named {name!r}")
        return {"status": "revoked", "name": name}

    async def ingest_traces(self, body: bytes, content_type: str, content_encoding: str | None) -> OtlpReply:
        return await self.collector.handle_export(body, content_type, content_encoding)

    async def search_traces(self, **query: Any) -> list[dict[str, Any]]:
        return await self.collector.search_traces(**query)

    async def get_trace(self, trace_id: str) -> dict[str, Any]:
        found = await self.collector.get_trace(trace_id)
        if found is None:
            raise NotFound(f"trace_id: no trace {trace_id!r}")
        return found

    async def dependencies(self, window: float | None = None) -> list[dict[str, Any]]:
        if window is not None and not (isinstance(window, int | float) and 0 < window <= MAX_WINDOW):
            raise ValueError(f"window: must be a number of seconds in (0, {MAX_WINDOW:g}], got {window!r}")
        return await self.collector.get_service_dependencies(window)
