"""The JSON shapes the control plane answers with, built from registry and client state.

The seed's shapes are kept field for field (discover, health); fields added since (`stale`,
`age`, weights, zones, check histories) are extra keys a seed client simply ignores.
Mesh health follows the seed: the share of healthy instances is the score, unhealthy
below 0.5, degraded below 0.8 or with any open circuit breaker.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from meshkit.events import HealthTransition
from meshkit.health.watch import CheckRecord
from meshkit.registry.base import Snapshot
from meshkit.types import HealthCheck, ServiceInstance, ServiceState

UNHEALTHY_BELOW = 0.5
DEGRADED_BELOW = 0.8


def discover_view(service_name: str, snap: Snapshot) -> dict[str, Any]:
    return {
        "service_name": service_name,
        "instances": [
            {
                "id": i.service_id,
                "address": i.endpoint,
                "state": i.state.value,
                "tags": list(i.tags),
                "metadata": dict(i.metadata),
                "weight": i.weight,
                "zone": i.zone,
                "version": i.version,
            }
            for i in snap.instances
        ],
        "total": len(snap.instances),
        "healthy": sum(1 for i in snap.instances if i.state == ServiceState.HEALTHY),
        "stale": snap.stale,
        "age": round(snap.age, 3),
    }


def health_view(topology: dict[str, Any], connected: bool) -> dict[str, Any]:
    total = topology["total_instances"]
    healthy = topology["healthy_instances"]
    score = healthy / total if total else 1.0
    known = {inst["id"] for svc in topology["services"].values() for inst in svc["instances"]}
    open_breakers = sum(
        1 for iid, state in topology["circuit_breakers"].items() if state == "open" and iid in known
    )
    status = "healthy"
    if score < UNHEALTHY_BELOW:
        status = "unhealthy"
    elif score < DEGRADED_BELOW or open_breakers:
        status = "degraded"
    return {
        "status": status,
        "health_score": round(score, 4),
        "total_services": len(topology["services"]),
        "total_instances": total,
        "healthy_instances": healthy,
        "open_circuit_breakers": open_breakers,
        "consul_connected": connected,  # the seed's name: is the registry backend reachable
    }


def check_view(check: HealthCheck | None) -> dict[str, Any] | None:
    return asdict(check) if check is not None else None


def record_view(record: CheckRecord) -> dict[str, Any]:
    return {
        "at": record.at,
        "ok": record.ok,
        "detail": record.detail,
        "duration": record.duration,
        "state": record.state.value,
    }


def transition_view(event: HealthTransition) -> dict[str, Any]:
    return {"at": event.at, "old": event.old, "new": event.new, "reason": event.reason}


def instance_view(
    inst: ServiceInstance,
    *,
    effective_check: HealthCheck | None,
    breaker: str,
    connections: int,
    checks: list[CheckRecord],
    transitions: list[HealthTransition],
) -> dict[str, Any]:
    return {
        "id": inst.service_id,
        "service_name": inst.service_name,
        "address": inst.endpoint,
        "host": inst.address,
        "port": inst.port,
        "state": inst.state.value,
        "tags": list(inst.tags),
        "metadata": dict(inst.metadata),
        "weight": inst.weight,
        "zone": inst.zone,
        "version": inst.version,
        "ttl": inst.ttl,
        "check": check_view(effective_check),
        "check_source": "instance" if inst.check is not None else "default",
        "circuit_breaker": breaker,
        "connections": connections,
        "checks": [record_view(r) for r in checks],
        "transitions": [transition_view(t) for t in transitions],
    }
