"""Which instances a balancer may pick from: healthy ones first, degraded ones as a fallback.

Every strategy picks from the list `eligible()` returns, so they all agree on the rules:
an instance is preferred when its state is HEALTHY or UNKNOWN, its weight is above 0
(weight 0 means drained: never picked), every gate passes (breakers and the outlier
detector provide gates) and a retry has not already tried it. When no instance is
preferred, DEGRADED ones that pass the same checks are used (Envoy's degraded hosts are
likewise only used when too few healthy ones remain). UNHEALTHY is never picked.

`excluded` (the ids a retry already tried) is a preference, not a rule: untried instances
are tried first, healthy then degraded, and only when every eligible instance was tried
are the tried ones used again, rather than failing the call.

Gates are called once per candidate per pick, so they must be cheap, side-effect-free
checks (a dict lookup and a compare); the admission of a half-open probe belongs to the
breaker layer beneath the balancer. A gate may carry a `reason` attribute ("circuit
open"), which the error message uses to say why an instance was skipped, and a `refusing`
attribute, an int that is 0 only while the gate would refuse no instance at all (no open
breaker, nothing ejected): `BalancerLayer` then leaves the gate out, so the common pick
calls no gate (measured: two gates cost ~2,900 instructions per candidate).

The common case, where every candidate passes, returns `candidates` itself: no list is
built and the pickers can cache per membership by identity.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from meshkit.errors import NoHealthyInstances
from meshkit.types import ServiceInstance, ServiceState

Gate = Callable[[ServiceInstance], bool]


class CountedGate(Protocol):
    """A gate that counts what it may refuse: `refusing == 0` means it allows every instance."""

    refusing: int

    def __call__(self, instance: ServiceInstance, /) -> bool: ...


def is_counted(gate: Gate) -> bool:
    """Does `gate` keep a `refusing` count (an int attribute, not a method's)?"""
    refusing = getattr(gate, "refusing", None)
    return isinstance(refusing, int) and not isinstance(refusing, bool)


_HEALTHY = ServiceState.HEALTHY
_UNKNOWN = ServiceState.UNKNOWN
_DEGRADED = ServiceState.DEGRADED
_UNHEALTHY = ServiceState.UNHEALTHY
_NOTHING: frozenset[str] = frozenset()


def eligible(
    service: str,
    candidates: Sequence[ServiceInstance],
    gates: Sequence[Gate] = (),
    excluded: frozenset[str] = _NOTHING,
) -> Sequence[ServiceInstance]:
    """The instances a picker may choose from; raises `NoHealthyInstances` saying why if none."""
    if candidates and _all_preferred(candidates, gates, excluded):
        return candidates
    return _filter(service, candidates, gates, excluded)


def _all_preferred(
    candidates: Sequence[ServiceInstance], gates: Sequence[Gate], excluded: frozenset[str]
) -> bool:
    """True when every candidate is preferred: the common case, checked with no allocation.

    The loops are specialised for no gate and for one gate (the usual breaker gate), as the
    per-candidate cost of a nested loop shows up at ten instances and a microsecond budget.
    """
    if excluded or len(gates) > 1:
        for inst in candidates:
            state = inst.state
            if (state is not _HEALTHY and state is not _UNKNOWN) or inst.weight <= 0:
                return False
            if inst.service_id in excluded:
                return False
            for gate in gates:
                if not gate(inst):
                    return False
        return True
    if gates:
        gate = gates[0]
        for inst in candidates:
            state = inst.state
            if (state is not _HEALTHY and state is not _UNKNOWN) or inst.weight <= 0 or not gate(inst):
                return False
        return True
    for inst in candidates:
        state = inst.state
        if (state is not _HEALTHY and state is not _UNKNOWN) or inst.weight <= 0:
            return False
    return True


def _filter(
    service: str,
    candidates: Sequence[ServiceInstance],
    gates: Sequence[Gate],
    excluded: frozenset[str],
) -> Sequence[ServiceInstance]:
    """The filtering path: sort candidates into tiers and return the best non-empty one.

    Tiers, best first: healthy untried, degraded untried, healthy tried, degraded tried.
    """
    best: list[ServiceInstance] = []
    rest: tuple[list[ServiceInstance], ...] = ()  # the other three tiers, made when first needed
    for inst in candidates:
        state = inst.state
        if state is _UNHEALTHY:
            continue
        if inst.weight <= 0:
            _check_weight(inst)
            continue
        for gate in gates:
            if not gate(inst):
                break
        else:
            tier = 1 if state is _DEGRADED else 0
            if excluded and inst.service_id in excluded:
                tier += 2
            if not tier:
                best.append(inst)
                continue
            if not rest:
                rest = ([], [], [])
            rest[tier - 1].append(inst)
    if best:
        return best
    for others in rest:
        if others:
            return others
    raise NoHealthyInstances(service, _explain(candidates, gates))


def _check_weight(inst: ServiceInstance) -> None:
    if inst.weight < 0:  # ServiceInstance rejects this; only a later assignment gets here
        raise ValueError(
            f"weight: must be an integer >= 0 (0 means never picked), got {inst.weight!r} "
            f"for instance {inst.service_id!r}"
        )


def _explain(candidates: Sequence[ServiceInstance], gates: Sequence[Gate]) -> str:
    """Why nothing was left: '3 instances: 2 unhealthy, 1 circuit open'."""
    if not candidates:
        return "no instance is registered"
    rejected: dict[str, int] = {}
    for inst in candidates:
        reason = _rejection(inst, gates)
        if reason is not None:
            rejected[reason] = rejected.get(reason, 0) + 1
    noun = "instance" if len(candidates) == 1 else "instances"
    reasons = ", ".join(f"{count} {reason}" for reason, count in rejected.items())
    return f"{len(candidates)} {noun}: {reasons}"


def _rejection(inst: ServiceInstance, gates: Sequence[Gate]) -> str | None:
    """Why `inst` may never be picked now, or None if it may (perhaps as a fallback)."""
    if inst.state is _UNHEALTHY:
        return "unhealthy"
    if inst.weight <= 0:
        return "drained (weight 0)"
    for gate in gates:
        if not gate(inst):
            return gate_reason(gate)
    return None


def gate_reason(gate: Gate) -> str:
    """The words for what a failing gate means: its `reason` attribute, else its name."""
    reason = getattr(gate, "reason", None)
    if isinstance(reason, str) and reason:
        return reason
    name = getattr(gate, "__qualname__", None) or type(gate).__qualname__
    return f"rejected by {name}"
