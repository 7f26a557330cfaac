"""Instances for balancer tests: `fleet(3)` is three healthy instances of service "users"."""

from __future__ import annotations

from collections.abc import Sequence

from meshkit.types import Request, ServiceInstance, ServiceState

SERVICE = "users"


def instance(
    name: str, *, state: ServiceState = ServiceState.HEALTHY, weight: int = 100, port: int = 8000
) -> ServiceInstance:
    return ServiceInstance(name, SERVICE, "127.0.0.1", port, state=state, weight=weight)


def fleet(n: int, *, weights: Sequence[int] | None = None) -> tuple[ServiceInstance, ...]:
    ws = list(weights) if weights is not None else [100] * n
    return tuple(instance(f"i{k}", weight=ws[k], port=8000 + k) for k in range(n))


def request(**kwargs: object) -> Request:
    return Request(service=SERVICE, **kwargs)  # type: ignore[arg-type]
