"""The balancer end to end: discovery -> balancer -> load tracking -> MockTransport."""

from __future__ import annotations

import functools
import random
from collections import Counter

import pytest

from meshkit.balance import BalancerLayer, LoadLayer, LoadTracker, RoundRobin, make_picker
from meshkit.balance.picker import Picker
from meshkit.balance.select import Gate
from meshkit.clock import FakeClock
from meshkit.discovery import DiscoveryLayer, StaticResolver
from meshkit.errors import NoHealthyInstances
from meshkit.service import Service
from meshkit.stack import Stack
from meshkit.transport.mock import MockTransport
from meshkit.types import Request, Response, ServiceInstance, ServiceState
from tests.balance.fleet import SERVICE, fleet, instance, request


def client(
    instances: tuple[ServiceInstance, ...],
    picker: Picker,
    gates: tuple[Gate, ...] = (),
    load: LoadTracker | None = None,
) -> tuple[Service, MockTransport]:
    transport = MockTransport(
        lambda req: Response(200, body=(req.instance.id if req.instance else "").encode())
    )
    stack = (
        Stack()
        .push("load", functools.partial(LoadLayer, tracker=load or LoadTracker(clock=FakeClock())))
        .push("balancer", functools.partial(BalancerLayer, picker=picker, gates=gates))
        .push("discovery", functools.partial(DiscoveryLayer, resolver=StaticResolver({SERVICE: instances})))
    )
    return stack.build(transport), transport


async def test_requests_reach_the_picked_instances() -> None:
    svc, transport = client(fleet(3), RoundRobin())
    responses = [await svc(request()) for _ in range(6)]
    assert [r.text() for r in responses] == ["i0", "i1", "i2"] * 2
    assert [r.instance.id for r in responses if r.instance] == ["i0", "i1", "i2"] * 2
    assert [req.instance.id for req in transport.requests if req.instance] == ["i0", "i1", "i2"] * 2


async def test_unhealthy_and_gated_instances_are_skipped() -> None:
    instances = (instance("a"), instance("b", state=ServiceState.UNHEALTHY), instance("c"), instance("d"))
    svc, _ = client(
        instances, make_picker("p2c_ewma", load=LoadTracker(), rng=random.Random(3)), (lambda i: i.id != "d",)
    )
    picked = Counter([(await svc(request())).text() for _ in range(40)])
    assert set(picked) == {"a", "c"}


class CountingGate:
    """A gate that refuses the ids in `closed` and counts them, as breakers and outliers do."""

    reason = "closed for the test"

    def __init__(self) -> None:
        self.closed: set[str] = set()
        self.asked = 0

    @property
    def refusing(self) -> int:
        return len(self.closed)

    def __call__(self, inst: ServiceInstance) -> bool:
        self.asked += 1
        return inst.id not in self.closed


async def test_a_counted_gate_is_asked_only_while_it_refuses_someone() -> None:
    gate = CountingGate()
    plain_asked: list[str] = []

    def plain(inst: ServiceInstance) -> bool:
        plain_asked.append(inst.id)
        return True

    svc, _ = client(fleet(3), RoundRobin(), (gate, plain))
    assert [(await svc(request())).text() for _ in range(3)] == ["i0", "i1", "i2"]
    assert gate.asked == 0 and len(plain_asked) == 9  # a gate without a count is always asked
    gate.closed.add("i1")
    picked = [(await svc(request())).text() for _ in range(4)]
    assert "i1" not in picked and gate.asked > 0
    gate.closed.update({"i0", "i2"})
    with pytest.raises(NoHealthyInstances, match="3 closed for the test"):
        await svc(request())


async def test_a_retry_goes_elsewhere() -> None:
    svc, _ = client(fleet(2), RoundRobin())
    assert {(await svc(request(excluded=frozenset({"i0"})))).text() for _ in range(4)} == {"i1"}


async def test_load_is_tracked_on_the_picked_instance() -> None:
    load = LoadTracker(clock=FakeClock())
    svc, _ = client(fleet(2), make_picker("least_connections", load=load), load=load)
    await svc(request())
    assert set(load.snapshot()) == {"i0"}


async def test_no_healthy_instance_fails_with_the_reason() -> None:
    down = tuple(instance(f"i{k}", state=ServiceState.UNHEALTHY) for k in range(2))
    svc, transport = client(down, RoundRobin())
    with pytest.raises(NoHealthyInstances, match="2 instances: 2 unhealthy"):
        await svc(request())
    assert transport.requests == []


async def test_a_negative_weight_is_rejected_with_its_field() -> None:
    with pytest.raises(ValueError, match=r"^weight: must be an integer >= 0"):
        instance("a", weight=-1)
    changed = instance("a")
    changed.weight = -5  # bypassing the constructor's check
    svc, _ = client((changed,), make_picker("weighted", load=LoadTracker()))
    with pytest.raises(
        ValueError, match=r"^weight: must be an integer >= 0 \(0 means never picked\), got -5"
    ):
        await svc(request())


async def test_drained_instance_is_never_picked_by_any_strategy() -> None:
    instances = fleet(3, weights=[100, 0, 100])
    for name in ("round_robin", "least_connections", "weighted", "random", "ip_hash", "p2c_ewma"):
        svc, _ = client(instances, make_picker(name, load=LoadTracker(), rng=random.Random(1)))
        picked = {(await svc(Request(service=SERVICE, hash_key=f"k{n}"))).text() for n in range(30)}
        assert "i1" not in picked and picked == {"i0", "i2"}, name
