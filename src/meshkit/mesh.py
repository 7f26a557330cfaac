"""`ServiceMesh`: the seed's facade, one object holding registry, cache, health checks and client.

`ServiceMesh()` with no arguments runs on the embedded in-memory registry; give it a
`data_dir` to persist, a `registry` URL (`etcd://...`, `consul://...`) to grow, or the
seed's `consul_host` / `kong_admin_url`. Discovery is served by a `CachedRegistry`, so
calls go on when the registry is down; health checks run on the instances it holds and
write their verdicts back. The control plane is this object behind an HTTP API.
"""

from __future__ import annotations

import contextlib
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from multidict import CIMultiDict

from meshkit.client import MeshClient
from meshkit.clock import SYSTEM_CLOCK, Clock
from meshkit.events import EventBus
from meshkit.health.registry_sync import Leadership, RegistryHealthSync
from meshkit.interceptors import RequestInterceptor, ResponseInterceptor
from meshkit.observe.tracing import TRACE_ID_KEY, Tracer
from meshkit.registry.base import AddressPolicy, Registry, Snapshot
from meshkit.registry.cache import CachedRegistry
from meshkit.registry.embedded import EmbeddedRegistry
from meshkit.resilience.retry import MAX_ATTEMPTS_KEY
from meshkit.transport.base import Transport
from meshkit.types import (
    HealthCheck,
    LoadBalancerStrategy,
    Request,
    ServiceInstance,
    ServiceState,
    default_instance_id,
)


@dataclass
class ServiceRequest:
    """The seed's call description (`/call` takes the same fields)."""

    service_name: str
    method: str = "GET"
    path: str = "/"
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    timeout: float = 30.0
    retry_count: int = 3
    hash_key: str | None = None  # what ip_hash hashes: the caller's address, say

    def __post_init__(self) -> None:
        if (
            isinstance(self.timeout, bool)
            or not isinstance(self.timeout, int | float)
            or not 0 < self.timeout <= 300
        ):
            raise ValueError(f"timeout: must be a number of seconds in (0, 300], got {self.timeout!r}")
        if (
            isinstance(self.retry_count, bool)
            or not isinstance(self.retry_count, int)
            or not 0 <= self.retry_count <= 10
        ):
            raise ValueError(f"retry_count: must be an integer in 0-10, got {self.retry_count!r}")

    def to_request(self) -> Request:
        body = self.body
        headers = dict(self.headers)
        if body is not None and not isinstance(body, bytes):
            if isinstance(body, str):
                body = body.encode()
            else:
                body = orjson.dumps(body)
                headers.setdefault("Content-Type", "application/json")
        request = Request(
            self.method,
            self.path,
            CIMultiDict(headers),
            body,
            service=self.service_name,
            timeout=self.timeout,
        )
        request.hash_key = self.hash_key
        request.context[MAX_ATTEMPTS_KEY] = self.retry_count + 1
        return request


def decode_body(content_type: str, body: bytes) -> Any:
    """JSON bodies as values, text as str, anything else as latin-1 text (never an error)."""
    if "json" in content_type:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
    try:
        return body.decode()
    except UnicodeDecodeError:
        return body.decode("latin-1")


class ServiceMesh:
    def __init__(
        self,
        consul_host: str | None = None,
        consul_port: int = 8500,
        kong_admin_url: str | None = None,
        load_balancer_strategy: str | LoadBalancerStrategy = LoadBalancerStrategy.P2C_EWMA,
        *,
        registry: Registry | str | None = None,
        data_dir: str | Path | None = None,
        health_checks: bool | None = None,
        address_policy: AddressPolicy | None = None,
        tracer: Tracer | None = None,
        transport: Transport | None = None,
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
        **client_options: Any,
    ) -> None:
        self.strategy = LoadBalancerStrategy.parse(load_balancer_strategy)
        self.clock = clock
        self.rng = rng or random.Random()
        self.bus = EventBus()
        self.kong_admin_url = kong_admin_url
        self.address_policy = address_policy
        if registry is None and consul_host is not None:
            registry = f"consul://{consul_host}:{consul_port}"
        self.backend = self._open_backend(registry, data_dir)
        self.registry = CachedRegistry(self.backend, clock=clock, rng=self.rng)
        self.health: RegistryHealthSync | None = None
        if health_checks is None:  # Consul's agent runs the checks itself
            health_checks = type(self.backend).__name__ != "ConsulRegistry"
        if health_checks:
            self.health = RegistryHealthSync(
                self.backend, leadership=self.health_leadership(), bus=self.bus, clock=clock, rng=self.rng
            )
        self.client = MeshClient(
            self.registry,
            strategy=self.strategy,
            transport=transport,
            clock=clock,
            rng=self.rng,
            bus=self.bus,
            tracer=tracer,
            **client_options,
        )
        self._started = False

    def _open_backend(self, registry: Registry | str | None, data_dir: str | Path | None) -> Registry:
        if registry is None or registry == "embedded":
            return EmbeddedRegistry(data_dir, clock=self.clock, address_policy=self.address_policy)
        if isinstance(registry, str):
            from meshkit.registry.factory import open_registry

            path = Path(data_dir) if data_dir is not None else None
            opened: Registry = open_registry(registry, data_dir=path, clock=self.clock)
            return opened
        return registry

    def health_leadership(self) -> Leadership | None:
        """With several control planes on one etcd, only the elected one runs health checks."""
        if type(self.backend).__name__ != "EtcdRegistry":
            return None
        from meshkit.registry.election import LeaderElection
        from meshkit.registry.etcd import EtcdRegistry

        assert isinstance(self.backend, EtcdRegistry)
        return LeaderElection(self.backend, "health-checker")

    async def initialize(self) -> None:
        if self._started:
            return
        await self.backend.start()
        await self.registry.start()
        if self.health is not None:
            await self.health.start()
        self._started = True

    async def shutdown(self) -> None:
        if not self._started:
            return
        self._started = False
        if self.health is not None:
            await self.health.stop()
        await self.client.aclose()
        await self.registry.close()
        await self.backend.close()

    async def __aenter__(self) -> ServiceMesh:
        await self.initialize()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()

    async def register_service(
        self,
        service_name: str,
        address: str,
        port: int,
        tags: list[str] | None = None,
        metadata: dict[str, str] | None = None,
        *,
        service_id: str | None = None,
        weight: int = 100,
        zone: str = "",
        version: str = "",
        check: HealthCheck | None = None,
        ttl: float | None = None,
    ) -> ServiceInstance:
        """Register an instance; returns it once the registry has it durably, raises otherwise."""
        instance = ServiceInstance(
            service_id or default_instance_id(service_name, address, port),
            service_name,
            address,
            port,
            tags=list(tags or []),
            metadata=dict(metadata or {}),
            weight=weight,
            zone=zone,
            version=version,
            check=check,
            ttl=ttl,
            state=ServiceState.UNKNOWN if check is not None else ServiceState.HEALTHY,
        )
        return await self.registry.register(instance, address_policy=self.address_policy)

    async def deregister_service(self, service_id: str) -> bool:
        self.client.parts.breakers.forget(service_id)
        return await self.registry.deregister(service_id)

    async def heartbeat(self, service_id: str, *, ttl_check: bool | None = None) -> None:
        """Refresh the instance's TTL and count the heartbeat as its TTL check's pass.

        `ttl_check=True` (the caller knows the instance has a TTL check, as the control plane
        does): the pass reaches whichever process checks, through the registry when another
        one does. None (not known): it is reported only where this process checks, whose
        checker knows its instances' checks (other kinds ignore it). False: no report.
        """
        await self.registry.heartbeat(service_id)
        health = self.health
        if health is None or ttl_check is False or (ttl_check is None and not health.active):
            return
        with contextlib.suppress(KeyError, ValueError):  # gone meanwhile, not watched, or not a TTL check
            await health.report_ttl(service_id, "pass", "heartbeat")

    async def discover(self, service_name: str, use_cache: bool = True) -> Snapshot:
        return await self.registry.discover(service_name, use_cache=use_cache)

    async def discover_services(self, service_name: str, use_cache: bool = True) -> list[ServiceInstance]:
        return list((await self.discover(service_name, use_cache)).instances)

    async def call_service(self, request: ServiceRequest) -> dict[str, Any]:
        """Call through the client stack; the seed's result shape. Mesh failures raise `MeshError`."""
        req = request.to_request()
        started = time.perf_counter()
        response = await self.client.call(req)
        return {
            "status_code": response.status,
            "headers": dict(response.headers),
            "body": decode_body(response.headers.get("Content-Type", ""), response.body),
            "instance_id": response.instance.service_id if response.instance else None,
            "trace_id": req.context.get(TRACE_ID_KEY),
            "duration": time.perf_counter() - started,
        }

    async def get_service_topology(self) -> dict[str, Any]:
        breakers = self.client.parts.breakers.states()
        load = self.client.parts.load
        services: dict[str, Any] = {}
        total = healthy = 0
        for inst in await self.registry.all_instances():
            entry = services.setdefault(inst.service_name, {"instances": [], "total": 0, "healthy": 0})
            entry["instances"].append(
                {
                    "id": inst.service_id,
                    "address": inst.endpoint,
                    "state": inst.state.value,
                    "connections": load.in_flight(inst.service_id),
                    "circuit_breaker": breakers.get(inst.service_id, "closed"),
                }
            )
            entry["total"] += 1
            total += 1
            if inst.state == ServiceState.HEALTHY:
                entry["healthy"] += 1
                healthy += 1
        return {
            "services": services,
            "total_instances": total,
            "healthy_instances": healthy,
            "circuit_breakers": breakers,
        }

    def add_request_interceptor(self, fn: RequestInterceptor) -> None:
        self.client.add_request_interceptor(fn)

    def add_response_interceptor(self, fn: ResponseInterceptor) -> None:
        self.client.add_response_interceptor(fn)
