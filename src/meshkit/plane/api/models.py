"""Request and response models of the v2 API: the seed's shapes, with tighter input rules.

Every request model refuses unknown fields (`extra="forbid"`), NaN and infinities, and
strings that are not valid Unicode text (lone surrogates cannot be stored or sent), so a
bad request ends in a 422 naming the field before the plane sees it. Response models
document the shapes in the OpenAPI spec (and schemathesis checks answers against them).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

SERVICE_NAME = r"^[a-z0-9-]+$"
TOPIC = r"^[a-z0-9:_-]+$"
TOKEN_NAME = r"^[a-z0-9][a-z0-9._-]{0,63}$"
MAX_DEPTH = 64


def check_text(value: Any, depth: int = 0) -> Any:
    """Refuse lone surrogates anywhere in a (nested) value, and nesting deeper than MAX_DEPTH."""
    if depth > MAX_DEPTH:
        raise ValueError(f"must nest at most {MAX_DEPTH} levels deep")
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("must be valid Unicode text (no lone surrogates)") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            check_text(key, depth + 1)
            check_text(item, depth + 1)
    elif isinstance(value, list | tuple):
        for item in value:
            check_text(item, depth + 1)
    return value


class RequestModel(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _valid_text(cls, value: Any) -> Any:
        return check_text(value)


class HealthCheckModel(RequestModel):
    kind: Literal["http", "tcp", "ttl"] = "http"
    path: str = Field("/health", min_length=1, max_length=1024)
    interval: float = Field(10.0, gt=0, le=86400)
    timeout: float = Field(2.0, gt=0, le=300)
    unhealthy_threshold: int = Field(3, ge=1, le=100)
    healthy_threshold: int = Field(2, ge=1, le=100)
    ttl: float | None = Field(None, gt=0, le=86400)
    deregister_critical_after: float = Field(60.0, gt=0, le=30 * 86400)


class RegisterRequest(RequestModel):
    service_name: str = Field(..., min_length=1, max_length=64, pattern=SERVICE_NAME)
    address: str = Field(..., min_length=1, max_length=253)
    port: int = Field(..., ge=1, le=65535)
    tags: list[str] = Field(default_factory=list, max_length=32)
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="Values that are not strings are stored as their JSON text."
    )
    service_id: str | None = Field(None, min_length=1, max_length=256)
    weight: int = Field(100, ge=0, le=1_000_000)
    zone: str = Field("", max_length=64)
    version: str = Field("", max_length=64)
    check: HealthCheckModel | None = None
    ttl: float | None = Field(None, gt=0, le=86400, description="Seconds without a heartbeat before expiry.")


class RegisterResponse(BaseModel):
    service_id: str
    status: str
    message: str


class StatusMessage(BaseModel):
    status: str
    message: str


class HeartbeatResponse(BaseModel):
    status: str
    service_id: str


class DiscoveredInstance(BaseModel):
    id: str
    address: str
    state: str
    tags: list[str]
    metadata: dict[str, str]
    weight: int
    zone: str
    version: str


class DiscoverResponse(BaseModel):
    service_name: str
    instances: list[DiscoveredInstance]
    total: int
    healthy: int
    stale: bool
    age: float


class CallRequest(RequestModel):
    service_name: str = Field(..., min_length=1, max_length=64, pattern=SERVICE_NAME)
    method: str = Field("GET", min_length=1, max_length=16)
    path: str = Field("/", min_length=1, max_length=8192)
    headers: dict[str, str] = Field(default_factory=dict)
    body: Any = None
    timeout: float = Field(30.0, ge=1.0, le=300.0)
    retry_count: int | None = Field(
        None, ge=0, le=10, description="Retries after the first try; default from configure/retry."
    )


class CallResponse(BaseModel):
    status_code: int
    headers: dict[str, str]
    body: Any
    instance_id: str
    trace_id: str
    duration: float


class TopologyInstance(BaseModel):
    id: str
    address: str
    state: str
    connections: int
    circuit_breaker: str


class TopologyService(BaseModel):
    instances: list[TopologyInstance]
    total: int
    healthy: int


class TopologyResponse(BaseModel):
    services: dict[str, TopologyService]
    total_instances: int
    healthy_instances: int
    circuit_breakers: dict[str, str]


class HealthResponse(BaseModel):
    """Without a token (and without --public-read) only `status` is given."""

    status: Literal["healthy", "degraded", "unhealthy"]
    health_score: float | None = None
    total_services: int | None = None
    total_instances: int | None = None
    healthy_instances: int | None = None
    open_circuit_breakers: int | None = None
    consul_connected: bool | None = None


class LoadBalancerConfig(BaseModel):
    status: str = "configured"
    strategy: str


class BreakerConfig(BaseModel):
    status: str = "configured"
    failure_threshold: int
    recovery_timeout: int


class RetryConfig(BaseModel):
    status: str = "configured"
    max_attempts: int
    base_delay: float
    max_delay: float
    retry_all_5xx: bool


class HealthCheckConfig(BaseModel):
    status: str = "configured"
    interval: float
    timeout: float
    unhealthy_threshold: int
    healthy_threshold: int
    path: str
    kind: str


class StrategyOnly(BaseModel):
    strategy: str


class BreakerSettingsModel(BaseModel):
    failure_threshold: int
    recovery_timeout: int


class RetrySettingsModel(BaseModel):
    max_attempts: int
    base_delay: float
    max_delay: float
    retry_all_5xx: bool


class HealthCheckSettingsModel(BaseModel):
    interval: float
    timeout: float
    unhealthy_threshold: int
    healthy_threshold: int
    path: str
    kind: str


class ConfigResponse(BaseModel):
    load_balancer: StrategyOnly
    circuit_breaker: BreakerSettingsModel
    retry: RetrySettingsModel
    health_check: HealthCheckSettingsModel


class EnqueueRequest(RequestModel):
    topic: str = Field(..., min_length=1, max_length=64, pattern=TOPIC)
    task: dict[str, Any]


class EnqueueResponse(BaseModel):
    id: str
    message: str


class ResultItem(BaseModel):
    id: str
    data: Any


class TokenCreateRequest(RequestModel):
    name: str = Field(..., min_length=1, max_length=64, pattern=TOKEN_NAME)
    services: list[str] = Field(..., min_length=1, max_length=100)


class TokenCreated(BaseModel):
    name: str
    token: str
    services: list[str]


class TokenInfo(BaseModel):
    name: str
    services: list[str]
    created: float


class TokenRevoked(BaseModel):
    status: str
    name: str


class CheckRecordModel(BaseModel):
    at: float
    ok: bool
    detail: str
    duration: float
    state: str


class TransitionModel(BaseModel):
    at: float
    old: str
    new: str
    reason: str


class InstanceDetail(BaseModel):
    id: str
    service_name: str
    address: str
    host: str
    port: int
    state: str
    tags: list[str]
    metadata: dict[str, str]
    weight: int
    zone: str
    version: str
    ttl: float | None
    check: dict[str, Any] | None
    check_source: Literal["instance", "default"]
    circuit_breaker: str
    connections: int
    checks: list[CheckRecordModel]
    transitions: list[TransitionModel]


class TraceSummary(BaseModel):
    trace_id: str
    root_operation: str
    root_service: str
    start: float
    duration_ms: float
    span_count: int
    error_count: int
    services: list[str]


class DependencyEdge(BaseModel):
    caller: str
    callee: str
    calls: int
    errors: int
    error_rate: float
    p50_ms: float
    p99_ms: float


class ErrorResponse(BaseModel):
    detail: Any


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": ErrorResponse, "description": "Refused: `detail` says why (and names the field)"},
    "5XX": {"model": ErrorResponse, "description": "The mesh could not do it now (503) or in time (504)"},
}
