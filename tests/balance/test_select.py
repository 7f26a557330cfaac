from __future__ import annotations

import pytest

from meshkit.balance import eligible, gate_reason
from meshkit.errors import NoHealthyInstances
from meshkit.types import ServiceInstance, ServiceState
from tests.balance.fleet import SERVICE, fleet, instance

H, U, D, X = ServiceState.HEALTHY, ServiceState.UNKNOWN, ServiceState.DEGRADED, ServiceState.UNHEALTHY


def ids(instances: object) -> list[str]:
    return [i.id for i in instances]  # type: ignore[attr-defined]


class OpenCircuits:
    """A breaker-like gate: a set of open instance ids."""

    reason = "circuit open"

    def __init__(self, *open_ids: str) -> None:
        self.open = set(open_ids)

    def __call__(self, inst: ServiceInstance) -> bool:
        return inst.id not in self.open


def test_all_healthy_returns_the_candidates_themselves() -> None:
    candidates = fleet(3)
    assert eligible(SERVICE, candidates, [OpenCircuits()]) is candidates


def test_unknown_state_counts_as_healthy() -> None:
    candidates = (instance("a", state=U), instance("b", state=H))
    assert ids(eligible(SERVICE, candidates)) == ["a", "b"]


def test_unhealthy_is_skipped() -> None:
    candidates = (instance("a", state=X), instance("b"), instance("c", state=X))
    assert ids(eligible(SERVICE, candidates)) == ["b"]


def test_degraded_only_when_no_healthy_instance() -> None:
    mixed = (instance("a", state=D), instance("b"), instance("c", state=X))
    assert ids(eligible(SERVICE, mixed)) == ["b"]
    fallback = (instance("a", state=D), instance("b", state=X), instance("c", state=D))
    assert ids(eligible(SERVICE, fallback)) == ["a", "c"]


def test_weight_zero_is_drained_even_when_alone() -> None:
    candidates = (instance("a", weight=0), instance("b", weight=1))
    assert ids(eligible(SERVICE, candidates)) == ["b"]
    with pytest.raises(NoHealthyInstances, match=r"1 instance: 1 drained \(weight 0\)"):
        eligible(SERVICE, (instance("a", weight=0),))


def test_gates_skip_instances_and_fall_back_to_degraded_ones() -> None:
    candidates = (instance("a"), instance("b"), instance("c", state=D))
    assert ids(eligible(SERVICE, candidates, [OpenCircuits("a")])) == ["b"]
    assert ids(eligible(SERVICE, candidates, [OpenCircuits("a", "b")])) == ["c"]


def test_every_gate_must_pass() -> None:
    candidates = fleet(3)
    assert ids(eligible(SERVICE, candidates, [OpenCircuits("i0"), OpenCircuits("i2")])) == ["i1"]


def test_excluded_is_avoided_while_something_else_is_left() -> None:
    candidates = fleet(3)
    assert ids(eligible(SERVICE, candidates, excluded=frozenset({"i0", "i1"}))) == ["i2"]


def test_untried_degraded_comes_before_a_tried_healthy_instance() -> None:
    candidates = (instance("a"), instance("b", state=D))
    assert ids(eligible(SERVICE, candidates, excluded=frozenset({"a"}))) == ["b"]


def test_excluded_is_ignored_when_honouring_it_leaves_nothing() -> None:
    candidates = (instance("a"), instance("b"), instance("c", state=X))
    assert ids(eligible(SERVICE, candidates, excluded=frozenset({"a", "b"}))) == ["a", "b"]
    degraded = (instance("a", state=D), instance("b", state=X))
    assert ids(eligible(SERVICE, degraded, excluded=frozenset({"a"}))) == ["a"]


def test_excluded_never_revives_a_rejected_instance() -> None:
    candidates = (instance("a"), instance("b", state=X))
    with pytest.raises(NoHealthyInstances, match="2 instances: 1 circuit open, 1 unhealthy"):
        eligible(SERVICE, candidates, [OpenCircuits("a")], frozenset({"a", "b"}))


def test_no_healthy_instances_says_why() -> None:
    candidates = (instance("a", state=X), instance("b", state=X), instance("c"))
    with pytest.raises(NoHealthyInstances) as err:
        eligible(SERVICE, candidates, [OpenCircuits("c")])
    assert err.value.service == SERVICE
    assert (
        str(err.value) == "no healthy instance of service 'users': 3 instances: 2 unhealthy, 1 circuit open"
    )


def test_no_candidates_at_all() -> None:
    with pytest.raises(NoHealthyInstances, match="no instance is registered"):
        eligible(SERVICE, ())


def test_a_gate_without_reason_is_named_in_the_message() -> None:
    def outlier_gate(inst: ServiceInstance) -> bool:
        return False

    assert gate_reason(outlier_gate).startswith("rejected by ")
    assert gate_reason(outlier_gate).endswith("outlier_gate")
    with pytest.raises(NoHealthyInstances, match=r"1 rejected by .*outlier_gate"):
        eligible(SERVICE, (instance("a"),), [outlier_gate])


def test_a_bound_method_gate_can_carry_a_reason() -> None:
    class Breakers:
        def allows(self, inst: ServiceInstance) -> bool:
            return False

        allows.reason = "circuit open"  # type: ignore[attr-defined]

    assert gate_reason(Breakers().allows) == "circuit open"
