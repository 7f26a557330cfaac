"""The v2 API under /api/v1/mesh/v2: the seed's endpoints and the ones added since, as shells.

Each route authenticates through a dependency and makes one call to the plane; the paths,
query parameters and JSON shapes of the seed are kept so its clients work unchanged.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from meshkit.plane.api import models as m
from meshkit.plane.api.deps import Admin, Caller, reader
from meshkit.plane.auth import parse_bearer
from meshkit.plane.plane import ControlPlane

STRATEGIES = r"^(round_robin|least_connections|weighted|random|ip_hash|p2c_ewma)$"
Read = [Depends(reader)]


def v2_router(plane: ControlPlane) -> APIRouter:
    router = APIRouter(tags=["mesh v2"], responses=m.ERROR_RESPONSES)

    @router.post("/register", response_model=m.RegisterResponse)
    async def register(body: m.RegisterRequest, who: Caller) -> dict[str, Any]:
        return await plane.register(who, **body.model_dump())

    @router.delete("/deregister/{service_id}", response_model=m.StatusMessage)
    async def deregister(service_id: str, who: Caller) -> dict[str, Any]:
        return await plane.deregister(who, service_id)

    @router.put("/heartbeat/{service_id}", response_model=m.HeartbeatResponse)
    async def heartbeat(service_id: str, who: Caller) -> dict[str, Any]:
        return await plane.heartbeat(who, service_id)

    @router.get("/discover/{service_name}", response_model=m.DiscoverResponse, dependencies=Read)
    async def discover(service_name: str, use_cache: bool = True) -> dict[str, Any]:
        return await plane.discover(service_name, use_cache)

    @router.get("/instances/{service_id}", response_model=m.InstanceDetail, dependencies=Read)
    async def instance(service_id: str) -> dict[str, Any]:
        return await plane.instance(service_id)

    @router.post("/call", response_model=m.CallResponse)
    async def call(body: m.CallRequest, request: Request, who: Caller) -> dict[str, Any]:
        return await plane.call(
            who,
            **body.model_dump(),
            request_headers=request.headers,
            caller_token=parse_bearer(request.headers.get("authorization")),
            client_address=request.client.host if request.client else None,
        )

    @router.get("/topology", response_model=m.TopologyResponse, dependencies=Read)
    async def topology() -> dict[str, Any]:
        return await plane.topology()

    @router.get("/health", response_model=m.HealthResponse, response_model_exclude_none=True)
    async def health(request: Request) -> dict[str, Any]:
        """Always 200 (readiness); the details need a token unless --public-read."""
        return await plane.health_for(request.headers.get("authorization"))

    @router.post("/configure/load-balancer", response_model=m.LoadBalancerConfig)
    async def configure_load_balancer(
        who: Admin, strategy: str = Query(..., pattern=STRATEGIES)
    ) -> dict[str, Any]:
        return await plane.configure_load_balancer(strategy)

    @router.post("/configure/circuit-breaker", response_model=m.BreakerConfig)
    async def configure_circuit_breaker(
        who: Admin,
        failure_threshold: Annotated[int, Query(ge=1, le=100)] = 5,
        recovery_timeout: Annotated[int, Query(ge=1, le=3600)] = 60,
    ) -> dict[str, Any]:
        return await plane.configure_circuit_breaker(failure_threshold, recovery_timeout)

    @router.post("/configure/retry", response_model=m.RetryConfig)
    async def configure_retry(
        who: Admin,
        max_attempts: Annotated[int, Query(ge=1, le=11)] = 3,
        base_delay: Annotated[float, Query(ge=0, le=60, allow_inf_nan=False)] = 0.05,
        max_delay: Annotated[float, Query(gt=0, le=300, allow_inf_nan=False)] = 30.0,
        retry_all_5xx: bool = False,
    ) -> dict[str, Any]:
        return await plane.configure_retry(
            max_attempts=max_attempts, base_delay=base_delay, max_delay=max_delay, retry_all_5xx=retry_all_5xx
        )

    @router.post("/configure/health-check", response_model=m.HealthCheckConfig)
    async def configure_health_check(
        who: Admin,
        interval: Annotated[float, Query(ge=0.05, le=86400, allow_inf_nan=False)] = 10.0,
        timeout: Annotated[float, Query(gt=0, le=300, allow_inf_nan=False)] = 2.0,  # noqa: ASYNC109
        unhealthy_threshold: Annotated[int, Query(ge=1, le=100)] = 3,
        healthy_threshold: Annotated[int, Query(ge=1, le=100)] = 2,
        path: Annotated[str, Query(min_length=1, max_length=1024)] = "/health",
        kind: Annotated[str, Query(pattern=r"^(http|tcp)$")] = "http",
    ) -> dict[str, Any]:
        return await plane.configure_health_check(
            interval=interval,
            timeout=timeout,
            unhealthy_threshold=unhealthy_threshold,
            healthy_threshold=healthy_threshold,
            path=path,
            kind=kind,
        )

    @router.get("/config", response_model=m.ConfigResponse, dependencies=Read)
    async def config() -> dict[str, Any]:
        return plane.config()

    @router.get("/metrics", response_class=Response, dependencies=Read)
    async def metrics() -> Response:
        """Prometheus text exposition."""
        body, content_type = plane.metrics_text()
        return Response(body, media_type=content_type)

    @router.post("/enqueue", response_model=m.EnqueueResponse)
    async def enqueue(body: m.EnqueueRequest, who: Caller) -> dict[str, Any]:
        return await plane.enqueue(body.topic, body.task)

    @router.get("/results", response_model=list[m.ResultItem], dependencies=Read)
    async def results(
        topic: Annotated[str, Query(min_length=1, max_length=64, pattern=m.TOPIC)],
        count: Annotated[int, Query(ge=1, le=100)] = 10,
    ) -> list[dict[str, Any]]:
        return await plane.results(topic, count)

    @router.post("/tokens", response_model=m.TokenCreated)
    async def create_token(body: m.TokenCreateRequest, who: Admin) -> dict[str, Any]:
        return await plane.create_token(body.name, body.services)

    @router.get("/tokens", response_model=list[m.TokenInfo])
    async def list_tokens(who: Admin) -> list[dict[str, Any]]:
        return plane.list_tokens()

    @router.delete("/tokens/{name}", response_model=m.TokenRevoked)
    async def revoke_token(name: str, who: Admin) -> dict[str, Any]:
        return await plane.revoke_token(name)

    return router
