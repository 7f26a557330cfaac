"""Outlier detection: consecutive failures eject, ejections grow and cap, a share limit, automatic
return and panic mode on a fake clock, and the layer fed through a mock transport."""

from __future__ import annotations

import functools

import pytest

from meshkit.balance import BalancerLayer, RoundRobin
from meshkit.clock import FakeClock
from meshkit.discovery import DiscoveryLayer, StaticResolver
from meshkit.errors import ConnectError
from meshkit.events import Ejection, EventBus, EventRecorder
from meshkit.outcome import Outcome
from meshkit.resilience.outlier import OutlierDetector, OutlierLayer, OutlierPolicy
from meshkit.transport.mock import MockTransport
from meshkit.types import Request, Response, ServiceInstance, ServiceState

FAIL, OK = Outcome.SERVER_ERROR, Outcome.SUCCESS


def fleet(n: int, service: str = "svc") -> list[ServiceInstance]:
    return [ServiceInstance(f"{service}-{i}", service, "127.0.0.1", 8000 + i) for i in range(n)]


def make(
    n: int = 10, policy: OutlierPolicy | None = None
) -> tuple[OutlierDetector, FakeClock, EventRecorder]:
    clock, bus = FakeClock(), EventBus()
    detector = OutlierDetector(policy, clock=clock, bus=bus)
    detector.update_membership("svc", fleet(n))
    return detector, clock, EventRecorder(bus)


def fail(detector: OutlierDetector, instance: ServiceInstance, times: int = 5) -> None:
    for _ in range(times):
        detector.record(instance, FAIL)


def test_five_consecutive_failures_eject() -> None:
    detector, _, events = make()
    a = fleet(10)[0]
    fail(detector, a, 4)
    assert detector.allows(a) and detector.ejected() == {}
    detector.record(a, Outcome.TIMEOUT)  # any failure kind counts
    assert not detector.allows(a) and not detector(a)
    assert detector.ejected() == {"svc-0": 30.0}
    [event] = events.of(Ejection)
    assert event == Ejection("svc-0", "svc", 30.0, 1, ejected=True, at=event.at)


def test_refusing_counts_the_ejected_instances() -> None:
    detector, clock, _ = make()
    a, b = fleet(10)[:2]
    assert detector.refusing == 0
    fail(detector, a)
    assert detector.refusing == 1
    clock.advance(30.0)
    detector.record(b, OK)  # the next record notices the return
    assert detector.refusing == 0
    fail(detector, a)
    detector.update_membership("svc", [b])  # a left the service
    assert detector.refusing == 0 and detector.ejected() == {}


def test_a_success_resets_the_count() -> None:
    detector, _, _ = make()
    a = fleet(10)[0]
    for _ in range(10):
        fail(detector, a, 4)
        detector.record(a, OK)
    assert detector.allows(a) and detector.times_ejected("svc-0") == 0


def test_ejection_returns_automatically_after_its_time() -> None:
    detector, clock, events = make()
    a = fleet(10)[0]
    fail(detector, a)
    returns_at = clock.time() + 30.0
    clock.advance(29.9)
    assert not detector.allows(a)
    clock.advance(0.1)
    assert detector.allows(a)  # the gate needs no sweep to let it back
    clock.advance(5.0)
    assert detector.ejected() == {}
    back = events.of(Ejection)[-1]
    assert back == Ejection("svc-0", "svc", 30.0, 1, ejected=False, at=returns_at)


def test_ejection_time_grows_with_each_ejection_and_caps_at_max() -> None:
    detector, clock, events = make()
    a = fleet(10)[0]
    durations = []
    for _ in range(12):
        fail(detector, a)  # failing again as soon as it returns
        durations.append(detector.ejected()["svc-0"])
        clock.advance(durations[-1])
    assert durations == [30.0, 60.0, 90.0, 120.0, 150.0, 180.0, 210.0, 240.0, 270.0, 300.0, 300.0, 300.0]
    assert [e.times_ejected for e in events.of(Ejection) if e.ejected] == list(range(1, 13))  # type: ignore[attr-defined]


def test_good_behaviour_forgives_earlier_ejections() -> None:
    detector, clock, _ = make()
    a = fleet(10)[0]
    for _ in range(3):
        fail(detector, a)
        clock.advance(detector.ejected()["svc-0"])
    clock.advance(60.0)  # two base ejection times in service: two ejections forgiven
    fail(detector, a)
    assert detector.times_ejected("svc-0") == 2
    assert detector.ejected()["svc-0"] == 60.0


def test_at_most_the_configured_share_is_ejected() -> None:
    detector, clock, _ = make(10)
    for inst in fleet(10):
        fail(detector, inst)
    assert list(detector.ejected()) == ["svc-0"]  # 10% of 10
    clock.advance(30.0)
    detector.record(fleet(10)[1], FAIL)  # its failures kept counting: room now, so it goes next
    assert list(detector.ejected()) == ["svc-1"]

    detector, _, _ = make(20)
    for inst in fleet(20):
        fail(detector, inst)
    assert len(detector.ejected()) == 2


def test_at_least_one_instance_may_always_be_ejected() -> None:
    detector, _, _ = make(3)
    for inst in fleet(3):
        fail(detector, inst)
    assert list(detector.ejected()) == ["svc-0"]


def test_panic_mode_allows_every_instance_when_too_few_are_usable() -> None:
    policy = OutlierPolicy(max_ejection_percent=100.0, panic_threshold=50.0)
    detector, clock, _ = make(4, policy)
    a, b, c, _d = fleet(4)
    fail(detector, a)
    fail(detector, b)
    assert not detector.allows(a) and not detector.allows(b)  # 50% usable: not below the threshold
    assert not detector.in_panic("svc")
    fail(detector, c)
    assert detector.in_panic("svc")  # 25% usable
    assert detector.allows(a) and detector.allows(b) and detector.allows(c)
    clock.advance(30.0)
    assert not detector.in_panic("svc")


def test_unhealthy_instances_count_against_the_panic_threshold() -> None:
    detector, _, _ = make(4, OutlierPolicy(panic_threshold=50.0))
    members = fleet(4)
    detector.update_membership("svc", members)
    fail(detector, members[0])
    assert not detector.allows(members[0])
    members[1].state = members[2].state = ServiceState.UNHEALTHY  # as the health checker marks them
    assert detector.allows(members[0])  # 1 of 4 usable: panic


def test_membership_changes_forget_departed_instances() -> None:
    detector, _, _ = make(10)
    fail(detector, fleet(10)[0])
    detector.update_membership("svc", fleet(10)[1:])
    assert detector.ejected() == {}
    assert detector.allows(fleet(10)[0])


def test_configure_replaces_the_policy() -> None:
    detector, _, _ = make(10)
    detector.configure(OutlierPolicy(consecutive_failures=2, base_ejection_time=10.0))
    fail(detector, fleet(10)[0], 2)
    assert detector.ejected() == {"svc-0": 10.0}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("consecutive_failures", 0, "must be an integer >= 1"),
        ("base_ejection_time", 0, "must be a number of seconds > 0"),
        ("max_ejection_time", 10.0, "must be a number of seconds >= base_ejection_time"),
        ("max_ejection_percent", 101, "must be a percentage in 0-100"),
        ("panic_threshold", -1, "must be a percentage in 0-100"),
    ],
)
def test_policy_validation_names_the_field(field: str, value: float, message: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field}: {message}"):
        OutlierPolicy(**{field: value})


async def test_the_layer_ejects_a_failing_instance_from_the_balancer() -> None:
    instances = fleet(3)
    bad = instances[1].id

    def handler(request: Request) -> Response:
        assert request.instance is not None
        return Response(503 if request.instance.id == bad else 200)

    transport = MockTransport(handler)
    detector = OutlierDetector(clock=FakeClock())
    service = DiscoveryLayer(
        BalancerLayer(OutlierLayer(transport, detector=detector), picker=RoundRobin(), gates=[detector]),
        resolver=StaticResolver({"svc": instances}),
    )
    statuses = [(await service(Request(service="svc"))).status for _ in range(60)]
    assert statuses.count(503) == 5  # then it was ejected and never picked again
    assert [r.instance.id for r in transport.requests if r.instance].count(bad) == 5
    assert list(detector.ejected()) == [bad]


async def test_the_layer_reraises_errors_unchanged_and_counts_them() -> None:
    [inst] = fleet(1)
    error = ConnectError("refused", inst.id)

    def handler(request: Request) -> Response:
        raise error

    detector = OutlierDetector(clock=FakeClock())
    layer = OutlierLayer(MockTransport(handler), detector=detector)
    for _ in range(5):
        with pytest.raises(ConnectError) as caught:
            await layer(Request(service="svc", candidates=(inst,), instance=inst))
        assert caught.value is error
    assert list(detector.ejected()) == [inst.id]
    assert detector.in_panic("svc") and detector.allows(inst)  # a lone instance is never shut out


async def test_the_layer_updates_membership_only_when_candidates_change() -> None:
    calls = []
    detector = OutlierDetector(clock=FakeClock())
    original = detector.update_membership

    @functools.wraps(original)
    def counting(service: str, instances: object) -> None:
        calls.append(service)
        original(service, instances)  # type: ignore[arg-type]

    detector.update_membership = counting  # type: ignore[method-assign]
    layer = OutlierLayer(MockTransport(lambda r: Response(200)), detector=detector)
    first, second = tuple(fleet(3)), tuple(fleet(3))
    for candidates in (first, first, first, second, second):
        await layer(Request(service="svc", candidates=candidates, instance=candidates[0]))
    assert calls == ["svc", "svc"]
