"""The values that travel through a meshkit stack: requests, responses and instances.

A `Request` is created by the caller, enriched on its way down the stack (discovery
fills `candidates`, the balancer sets `instance`, the deadline layer sets `deadline`)
and handed to the transport. A `Response` comes back up. A `ServiceInstance` is the
registry's record of one running copy of a service; the seed's names are kept.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson
from multidict import CIMultiDict

SERVICE_NAME = r"[a-z0-9-]{1,64}"  # a service name, for patterns that embed it
SERVICE_NAME_RE = re.compile(SERVICE_NAME + r"\Z")  # \Z, not $: "$" also matches before a final "\n"


class ServiceState(StrEnum):
    """Health of one instance, as the registry and health checker see it."""

    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    DEGRADED = "degraded"
    UNKNOWN = "unknown"


class LoadBalancerStrategy(StrEnum):
    """The balancer strategies selectable by name (the seed's five plus the default)."""

    ROUND_ROBIN = "round_robin"
    LEAST_CONNECTIONS = "least_connections"
    WEIGHTED = "weighted"
    RANDOM = "random"
    IP_HASH = "ip_hash"
    P2C_EWMA = "p2c_ewma"

    @classmethod
    def parse(cls, value: str | LoadBalancerStrategy) -> LoadBalancerStrategy:
        try:
            return cls(value)
        except ValueError:
            allowed = ", ".join(s.value for s in cls)
            raise ValueError(f"strategy: unknown {value!r}; allowed: {allowed}") from None


def validate_service_name(name: object, field_name: str = "service_name") -> str:
    if not isinstance(name, str) or not SERVICE_NAME_RE.match(name):
        raise ValueError(f"{field_name}: must match ^[a-z0-9-]+$ and be 1-64 characters, got {name!r}")
    return name


CHECK_KINDS = ("http", "tcp", "ttl")


@dataclass(slots=True)
class HealthCheck:
    """How an instance's health is checked: an HTTP path, a TCP connect, or a TTL it reports."""

    kind: str = "http"
    path: str = "/health"
    interval: float = 10.0
    timeout: float = 2.0
    unhealthy_threshold: int = 3  # consecutive failures to mark unhealthy
    healthy_threshold: int = 2  # consecutive successes to mark healthy
    ttl: float | None = None  # for kind == "ttl": seconds between self-reports
    deregister_critical_after: float = 60.0

    def __post_init__(self) -> None:
        if self.kind not in CHECK_KINDS:
            raise ValueError(f"check.kind: must be one of {', '.join(CHECK_KINDS)}, got {self.kind!r}")
        if not isinstance(self.path, str) or not self.path.startswith("/") or self.path.startswith("//"):
            raise ValueError(f"check.path: must be a path starting with '/', not a URL, got {self.path!r}")
        for name in ("interval", "timeout", "deregister_critical_after"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"check.{name}: must be a number > 0, got {value!r}")
        for name in ("unhealthy_threshold", "healthy_threshold"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"check.{name}: must be an integer >= 1, got {value!r}")
        if self.kind == "ttl" and (self.ttl is None or self.ttl <= 0):
            raise ValueError(f"check.ttl: a ttl check needs ttl > 0, got {self.ttl!r}")


@dataclass(slots=True, eq=False)
class ServiceInstance:
    """One running copy of a service: where it listens and how healthy it is."""

    service_id: str
    service_name: str
    address: str
    port: int
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    state: ServiceState = ServiceState.UNKNOWN
    weight: int = 100
    zone: str = ""
    version: str = ""
    check: HealthCheck | None = None
    ttl: float | None = None  # seconds without a heartbeat before the instance expires
    connections: int = 0  # in-flight requests, filled in by the client's load tracker

    def __post_init__(self) -> None:
        validate_service_name(self.service_name)
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 1 <= self.port <= 65535:
            raise ValueError(f"port: must be an integer in 1-65535, got {self.port!r}")
        if isinstance(self.weight, bool) or not isinstance(self.weight, int) or self.weight < 0:
            raise ValueError(f"weight: must be an integer >= 0 (0 means never picked), got {self.weight!r}")
        if not isinstance(self.address, str) or not self.address:
            raise ValueError(f"address: must be a non-empty host name or IP, got {self.address!r}")
        if not self.service_id:
            raise ValueError("service_id: must be non-empty")

    @property
    def id(self) -> str:
        return self.service_id

    @property
    def endpoint(self) -> str:
        """`host:port`, bracketing IPv6 literals."""
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.endpoint}"

    def __hash__(self) -> int:
        return hash(self.service_id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ServiceInstance) and other.service_id == self.service_id


def default_instance_id(service_name: str, address: str, port: int) -> str:
    return f"{service_name}-{address}-{port}"


@dataclass(slots=True)
class Request:
    """An outbound call to a service, named by `service`, routed by the stack."""

    method: str = "GET"
    path: str = "/"
    headers: CIMultiDict[str] = field(default_factory=CIMultiDict)
    body: bytes | None = None
    service: str = ""
    timeout: float | None = None  # seconds for the whole call, retries included
    deadline: float | None = None  # absolute, on the stack's clock; set by the deadline layer
    hash_key: str | None = None  # what ip_hash hashes (client address or a header value)
    candidates: Sequence[ServiceInstance] = ()  # filled by discovery
    instance: ServiceInstance | None = None  # chosen by the balancer
    excluded: frozenset[str] = frozenset()  # instance ids a retry should avoid
    attempt: int = 0  # 0 for the first try, 1 for the first retry, ...
    context: dict[str, Any] = field(default_factory=dict)  # per-call scratch for layers

    def __post_init__(self) -> None:
        if not isinstance(self.headers, CIMultiDict):
            self.headers = CIMultiDict(self.headers or {})
        self.method = self.method.upper()


@dataclass(slots=True)
class Response:
    """What came back from an instance."""

    status: int
    headers: CIMultiDict[str] = field(default_factory=CIMultiDict)
    body: bytes = b""
    instance: ServiceInstance | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.headers, CIMultiDict):
            self.headers = CIMultiDict(self.headers or {})

    @property
    def ok(self) -> bool:
        return self.status < 400

    def text(self, encoding: str = "utf-8") -> str:
        return self.body.decode(encoding, errors="replace")

    def json(self) -> Any:
        return orjson.loads(self.body)
