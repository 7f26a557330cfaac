"""How a meshkit instance is written as a Consul service, and read back.

Consul's service definition (agent/service/register) has ID, Name, Address, Port, Tags,
Meta, Weights and one Check; the meshkit fields Consul has no place for (weight 0, zone,
version, the check's own settings, the heartbeat TTL) ride in Meta under reserved
`meshkit-` keys, as strings because Consul Meta values are strings. The state comes from
the checks Consul reports (health/service): any critical (or maintenance) check makes an
instance unhealthy, any warning degraded, otherwise healthy; this is how Consul itself
aggregates them. Services registered by others are read as well, with Consul's defaults.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict
from typing import Any

import orjson

from meshkit.types import SERVICE_NAME_RE, HealthCheck, ServiceInstance, ServiceState

log = logging.getLogger(__name__)

META_KEY_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
MAX_META_PAIRS = 64
MAX_META_VALUE = 512
RESERVED = ("meshkit-weight", "meshkit-zone", "meshkit-version", "meshkit-check", "meshkit-ttl")
STATUS_OF_STATE = {
    ServiceState.HEALTHY: "passing",
    ServiceState.DEGRADED: "warning",
    ServiceState.UNHEALTHY: "critical",
}


def duration(seconds: float) -> str:
    """A Go duration string Consul accepts: whole seconds as "10s", anything finer in ms."""
    if float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{max(1, round(seconds * 1000))}ms"


def check_id(service_id: str) -> str:
    """The id Consul gives the single check registered with a service."""
    return f"service:{service_id}"


def heartbeat_ttl(inst: ServiceInstance) -> float | None:
    """The TTL Consul holds the instance to, if it reports its own health."""
    if inst.check is not None and inst.check.kind == "ttl":
        return inst.check.ttl
    return inst.ttl if inst.check is None else None


def validate_meta(metadata: dict[str, str]) -> None:
    """Consul's Meta rules on top of meshkit's: key charset, pair count, value length."""
    limit = MAX_META_PAIRS - len(RESERVED)
    if len(metadata) > limit:
        raise ValueError(
            f"metadata: Consul allows at most {limit} keys beside meshkit's, got {len(metadata)}"
        )
    for key, value in metadata.items():
        if not META_KEY_RE.match(key) or key.startswith(("consul-", "meshkit-")):
            raise ValueError(
                "metadata: Consul keys must be 1-128 letters, digits, _ or - and not start with "
                f"'consul-' or 'meshkit-', got {key!r:.80}"
            )
        if len(value) > MAX_META_VALUE:
            raise ValueError(f"metadata: Consul values are at most {MAX_META_VALUE} characters ({key!r})")


def encode_check(inst: ServiceInstance) -> dict[str, Any] | None:
    check = inst.check
    ttl = heartbeat_ttl(inst)
    if check is None and ttl is None:
        return None
    body: dict[str, Any] = {"Name": f"meshkit check of {inst.service_id}"}
    if ttl is not None:
        body["TTL"] = duration(ttl)
    elif check is not None:
        if check.kind == "http":
            body.update(HTTP=f"{inst.url}{check.path}", Method="GET")
        else:
            body["TCP"] = inst.endpoint
        body.update(
            Interval=duration(check.interval),
            Timeout=duration(check.timeout),
            SuccessBeforePassing=check.healthy_threshold,
            FailuresBeforeCritical=check.unhealthy_threshold,
        )
    if check is not None:
        body["DeregisterCriticalServiceAfter"] = duration(check.deregister_critical_after)
    if inst.state in STATUS_OF_STATE:
        body["Status"] = STATUS_OF_STATE[inst.state]
    return body


def encode_service(inst: ServiceInstance) -> dict[str, Any]:
    """The body of PUT /v1/agent/service/register for `inst` (already validated)."""
    validate_meta(inst.metadata)
    meta = dict(inst.metadata)
    meta["meshkit-weight"] = str(inst.weight)
    if inst.zone:
        meta["meshkit-zone"] = inst.zone
    if inst.version:
        meta["meshkit-version"] = inst.version
    if inst.check is not None:
        meta["meshkit-check"] = orjson.dumps(asdict(inst.check)).decode()
    if inst.ttl is not None:
        meta["meshkit-ttl"] = repr(float(inst.ttl))
    body: dict[str, Any] = {
        "ID": inst.service_id,
        "Name": inst.service_name,
        "Address": inst.address,
        "Port": inst.port,
        "Tags": list(inst.tags),
        "Meta": meta,
        "Weights": {"Passing": max(1, inst.weight), "Warning": 1},  # Consul needs Passing >= 1
    }
    check = encode_check(inst)
    if check is not None:
        body["Check"] = check
    return body


def aggregate(checks: list[dict[str, Any]]) -> ServiceState:
    statuses = {c.get("Status") for c in checks}
    if statuses & {"critical", "maintenance"}:
        return ServiceState.UNHEALTHY
    if "warning" in statuses:
        return ServiceState.DEGRADED
    return ServiceState.HEALTHY


def decode_service(
    svc: dict[str, Any], checks: list[dict[str, Any]], node_address: str = ""
) -> ServiceInstance | None:
    """A Consul service entry as an instance; None (logged) for one meshkit cannot represent."""
    name = svc.get("Service") or svc.get("Name") or ""
    if not SERVICE_NAME_RE.match(name) or name == "consul":
        return None
    meta = {str(k): str(v) for k, v in (svc.get("Meta") or {}).items()}
    own = {key: meta.pop(key) for key in RESERVED if key in meta}
    try:
        check_fields = orjson.loads(own["meshkit-check"]) if "meshkit-check" in own else None
        weights = svc.get("Weights") or {}
        return ServiceInstance(
            service_id=str(svc.get("ID") or name),
            service_name=name,
            address=str(svc.get("Address") or node_address),
            port=int(svc.get("Port") or 0),
            tags=list(svc.get("Tags") or []),
            metadata=meta,
            state=aggregate(checks),
            weight=int(own.get("meshkit-weight", weights.get("Passing", 1))),
            zone=own.get("meshkit-zone", ""),
            version=own.get("meshkit-version", ""),
            check=HealthCheck(**check_fields) if check_fields is not None else None,
            ttl=float(own["meshkit-ttl"]) if "meshkit-ttl" in own else None,
        )
    except (ValueError, TypeError, orjson.JSONDecodeError) as e:
        log.debug("consul service %r skipped: %s", svc.get("ID"), e)
        return None


def decode_health(entries: list[dict[str, Any]]) -> list[ServiceInstance]:
    """The instances in a health/service answer, sorted by id."""
    out = []
    for entry in entries:
        node = entry.get("Node") or {}
        inst = decode_service(entry.get("Service") or {}, entry.get("Checks") or [], node.get("Address", ""))
        if inst is not None:
            out.append(inst)
    out.sort(key=lambda i: i.service_id)
    return out
