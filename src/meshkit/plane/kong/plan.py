"""What Kong should hold for the registry, and the changes that take it there: pure functions.

For each service `name` in the registry meshkit wants, in Kong's terms (the seed's layout):
an upstream `{name}-upstream` whose active health checks probe the instances' check path,
one target per HEALTHY instance (`host:port`, its weight), a Kong service `{name}` whose
host is that upstream, and a route `/{name}` to it. Every object carries the ownership tag
(`meshkit`); only tagged objects are ever changed or deleted, and a name already taken by
an untagged object is reported as a conflict rather than overwritten.

`plan(desired, actual)` is a diff in the spirit of `terraform plan` and decK: it compares
only the fields meshkit sets (Kong fills in defaults for the rest), so a second plan after
a successful sync is empty: the sync is idempotent. Changes come in an order Kong accepts:
upstreams, services and routes first, new targets before old ones leave, and deletions of
routes before their services.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from meshkit.types import HealthCheck, ServiceInstance, ServiceState

log = logging.getLogger(__name__)
Action = Literal["create", "update", "delete"]
Kind = Literal["upstream", "service", "route", "target"]
MAX_WEIGHT = 65535  # Kong's target weight range is 0-65535
ORDER: dict[tuple[str, str], int] = {
    ("create", "upstream"): 0, ("update", "upstream"): 0, ("create", "service"): 1, ("update", "service"): 1,
    ("create", "route"): 2, ("update", "route"): 2, ("create", "target"): 3, ("update", "target"): 4,
    ("delete", "target"): 5, ("delete", "route"): 6, ("delete", "service"): 7, ("delete", "upstream"): 8,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Change:
    """One step towards the desired state; `error` is set when it could not be (or was not) applied."""

    action: Action
    kind: Kind
    name: str  # the entity's name; a target's "host:port"
    parent: str = ""  # the upstream of a target, the service of a route
    body: Mapping[str, Any] | None = None  # what meshkit sends (create, update)
    before: Mapping[str, Any] | None = None  # what Kong holds now (update, delete)
    error: str | None = None


@dataclass(slots=True)
class KongState:
    """Entities by name (targets by upstream, then target); `foreign` are names meshkit must not touch."""

    upstreams: dict[str, dict[str, Any]] = field(default_factory=dict)
    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    routes: dict[str, dict[str, Any]] = field(default_factory=dict)
    targets: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    foreign: set[tuple[str, str]] = field(default_factory=set)


def upstream_name(service: str, prefix: str = "") -> str:
    return f"{prefix}{service}-upstream"


def healthchecks(check: HealthCheck) -> dict[str, Any]:
    """Kong's `healthchecks.active` for a meshkit check; a TTL check cannot be probed, so it is off."""
    probing = check.kind != "ttl"
    interval = check.interval if probing else 0
    active: dict[str, Any] = {
        "type": "tcp" if check.kind == "tcp" else "http",
        "timeout": check.timeout,
        "healthy": {"interval": interval, "successes": check.healthy_threshold},
        "unhealthy": {
            "interval": interval,
            "http_failures": check.unhealthy_threshold,
            "tcp_failures": check.unhealthy_threshold,
            "timeouts": check.unhealthy_threshold,
        },
    }
    if active["type"] == "http":
        active["http_path"] = check.path
    return {"active": active}


def desired_state(
    instances: Iterable[ServiceInstance], *, prefix: str = "", tag: str = "meshkit"
) -> KongState:
    """What Kong should hold for these registry instances (see the module docstring)."""
    by_service: dict[str, list[ServiceInstance]] = {}
    for inst in sorted(instances, key=lambda i: i.service_id):
        by_service.setdefault(inst.service_name, []).append(inst)
    state = KongState()
    tags = [tag]
    for service, members in sorted(by_service.items()):
        up = upstream_name(service, prefix)
        check = next((i.check for i in members if i.check is not None), None) or HealthCheck()
        state.upstreams[up] = {"name": up, "healthchecks": healthchecks(check), "tags": tags}
        state.services[prefix + service] = {
            "name": prefix + service, "host": up, "port": 80, "protocol": "http", "tags": tags,
        }  # fmt: skip
        state.routes[prefix + service] = {
            "name": prefix + service, "paths": [f"/{service}"], "strip_path": True,
            "protocols": ["http", "https"], "service": {"name": prefix + service}, "tags": tags,
        }  # fmt: skip
        targets = state.targets.setdefault(up, {})
        for inst in members:
            if inst.state != ServiceState.HEALTHY:
                continue
            if inst.weight > MAX_WEIGHT:
                log.warning(
                    "instance %s: weight %d is above Kong's %d; not synced", inst.id, inst.weight, MAX_WEIGHT
                )
                continue
            targets[inst.endpoint] = {"target": inst.endpoint, "weight": inst.weight, "tags": tags}
    return state


def covers(actual: Any, wanted: Any) -> bool:
    """Does Kong's `actual` already hold every field of `wanted`? (Kong adds defaults; tags are a set.)"""
    if isinstance(wanted, Mapping):
        return isinstance(actual, Mapping) and all(
            covers(actual.get(k), v) if k != "tags" else sorted(actual.get(k) or []) == sorted(v)
            for k, v in wanted.items()
        )
    if isinstance(wanted, float | int) and not isinstance(wanted, bool):
        return (
            isinstance(actual, float | int)
            and not isinstance(actual, bool)
            and float(actual) == float(wanted)
        )
    return bool(actual == wanted)


def plan(desired: KongState, actual: KongState) -> list[Change]:
    """The changes that turn `actual` into `desired`, in an order Kong accepts."""
    changes: list[Change] = []
    for kind, want, have in (
        ("upstream", desired.upstreams, actual.upstreams),
        ("service", desired.services, actual.services),
        ("route", desired.routes, actual.routes),
    ):
        changes.extend(_diff(kind, want, have, actual.foreign))  # type: ignore[arg-type]
    for up in sorted(desired.targets.keys() | actual.targets.keys()):
        if up not in desired.upstreams and up in actual.upstreams:
            continue  # deleting the upstream deletes its targets
        if (("upstream", up)) in actual.foreign:
            continue
        changes.extend(
            _diff("target", desired.targets.get(up, {}), actual.targets.get(up, {}), set(), parent=up)
        )
    changes.sort(key=lambda c: ORDER[(c.action, c.kind)])
    return changes


def _diff(
    kind: Kind,
    want: Mapping[str, Mapping[str, Any]],
    have: Mapping[str, Mapping[str, Any]],
    foreign: set[tuple[str, str]],
    parent: str = "",
) -> list[Change]:
    out: list[Change] = []
    for name in sorted(want.keys() | have.keys()):
        wanted, current = want.get(name), have.get(name)
        owner = parent or (str(wanted["service"]["name"]) if kind == "route" and wanted else "")
        if wanted is not None and (kind, name) in foreign:
            why = f"a Kong {kind} named {name!r} exists without meshkit's tag; not touching it"
            out.append(Change("create", kind, name, owner, wanted, None, error=why))
        elif wanted is None and current is not None:
            out.append(Change("delete", kind, name, parent, None, current))
        elif wanted is not None and current is None:
            out.append(Change("create", kind, name, owner, wanted))
        elif wanted is not None and not covers(current, wanted):
            out.append(Change("update", kind, name, owner, wanted, current))
    return out


def format_diff(changes: Iterable[Change]) -> str:
    """The plan as text, one line per change (`meshkit kong sync --dry-run` prints this)."""
    sign = {"create": "+", "update": "~", "delete": "-"}
    lines = []
    for c in changes:
        where = f" in {c.parent}" if c.parent and c.kind == "target" else ""
        line = f"{sign[c.action]} {c.kind} {c.name}{where}"
        if c.action == "update" and c.body is not None and c.before is not None:
            line += "  (" + ", ".join(_field_changes(c.before, c.body)) + ")"
        elif c.kind == "target" and c.body is not None:
            line += f"  (weight {c.body.get('weight')})"
        if c.error:
            line += f"  ! {c.error}"
        lines.append(line)
    return "\n".join(lines) if lines else "no changes: Kong matches the registry"


def _field_changes(before: Mapping[str, Any], after: Mapping[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key, value in after.items():
        old = before.get(key)
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            out.extend(_field_changes(old, value, f"{prefix}{key}."))
        elif not covers(old, value):
            out.append(f"{prefix}{key}: {old!r} -> {value!r}")
    return out
