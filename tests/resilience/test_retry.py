"""RetryLayer over a fake balancer: what is retried, where, how often, and when it stops."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import pytest

from meshkit.clock import SYSTEM_CLOCK, FakeClock
from meshkit.errors import (
    ConnectError,
    ConnectionReset,
    DeadlineExceeded,
    NoHealthyInstances,
    RequestTimeout,
)
from meshkit.events import EventBus, EventRecorder, RetryAttempt
from meshkit.resilience.backoff import full_jitter
from meshkit.resilience.breaker import BreakerLayer, BreakerPolicy, BreakerSet
from meshkit.resilience.budget import RetryBudget
from meshkit.resilience.retry import RetryLayer, RetryPolicy, is_idempotent
from meshkit.transport import AiohttpTransport, MockTransport
from meshkit.types import Request, Response
from tests.resilience.fakes import FirstAvailable, drive, instances
from tests.support.servers import free_port, status

A, B, C = instances(8001, 8002, 8003)

Behaviour = Callable[[Request], Response]


def by_instance(**answers: int | type[Exception]) -> Behaviour:
    """Answer per instance port (`p8001=503`), raising when given an exception type."""

    def handle(request: Request) -> Response:
        assert request.instance is not None
        answer = answers.get(f"p{request.instance.port}", 200)
        if isinstance(answer, int):
            return Response(answer)
        raise answer("scripted", request.instance.id)

    return handle


class Harness:
    def __init__(
        self,
        behaviour: Behaviour,
        policy: RetryPolicy | None = None,
        budget: RetryBudget | None = None,
        breakers: BreakerSet | None = None,
    ) -> None:
        self.clock = FakeClock()
        self.bus = EventBus()
        self.events = EventRecorder(self.bus)
        self.sent_to: list[int] = []  # recorded as sent: the retry layer reuses the Request object

        def record(request: Request) -> Response:
            assert request.instance is not None
            self.sent_to.append(request.instance.port)
            return behaviour(request)

        self.transport = MockTransport(record)
        inner = self.transport if breakers is None else BreakerLayer(self.transport, breakers=breakers)
        self.balancer = FirstAvailable(inner)
        self.budget = budget or RetryBudget(clock=self.clock)
        policy = policy or RetryPolicy(base_delay=0.01)
        self.layer = RetryLayer(
            self.balancer,
            policy=policy,
            budget=self.budget,
            clock=self.clock,
            rng=random.Random(1),
            bus=self.bus,
        )

    async def call(self, request: Request) -> Response:
        if not request.candidates:
            request.candidates = [A, B, C]
        return await drive(self.clock, self.layer(request))


async def test_idempotent_request_is_retried_on_a_different_instance() -> None:
    h = Harness(by_instance(p8001=503))
    request = Request("GET", service="svc")
    response = await h.call(request)
    assert response.status == 200
    assert h.sent_to == [8001, 8002]
    assert request.attempt == 1 and request.context["retries"] == 1
    assert request.excluded == {A.id}
    [event] = h.events.of(RetryAttempt)
    assert (event.service_name, event.attempt, event.reason) == ("svc", 1, "status 503")  # type: ignore[attr-defined]


async def test_post_is_not_retried_on_5xx_timeout_or_reset() -> None:
    for answer in (503, RequestTimeout, ConnectionReset):
        h = Harness(by_instance(p8001=answer))
        if isinstance(answer, int):
            assert (await h.call(Request("POST"))).status == answer
        else:
            with pytest.raises(answer):
                await h.call(Request("POST"))
        assert h.sent_to == [8001]


async def test_post_with_idempotency_key_is_retried() -> None:
    h = Harness(by_instance(p8001=503, p8002=RequestTimeout))
    response = await h.call(Request("POST", headers={"idempotency-key": "k-1"}))
    assert response.status == 200
    assert h.sent_to == [8001, 8002, 8003]


async def test_connect_errors_are_retried_even_for_post() -> None:
    h = Harness(by_instance(p8001=ConnectError))
    assert (await h.call(Request("POST"))).status == 200
    assert h.sent_to == [8001, 8002]


async def test_open_circuit_is_retried_elsewhere_even_for_post() -> None:
    breakers = BreakerSet(BreakerPolicy(failure_threshold=1), clock=FakeClock())
    h = Harness(by_instance(p8001=503), breakers=breakers)
    await h.call(Request("POST"))  # opens A's breaker, not retried (POST, 503)
    assert breakers.states() == {A.id: "open"}
    response = await h.call(Request("POST"))
    assert response.status == 200
    assert h.balancer.picks == [A.id, A.id, B.id]  # the fake balancer ignores the gate
    assert h.sent_to == [8001, 8002]  # CircuitOpen sent nothing to A


async def test_timeouts_and_resets_are_retried_when_idempotent() -> None:
    h = Harness(by_instance(p8001=RequestTimeout, p8002=ConnectionReset))
    assert (await h.call(Request("PUT"))).status == 200
    assert h.sent_to == [8001, 8002, 8003]


async def test_attempts_are_capped_and_the_last_result_surfaces() -> None:
    h = Harness(by_instance(p8001=503, p8002=502, p8003=504))
    request = Request("GET")
    assert (await h.call(request)).status == 504
    assert h.sent_to == [8001, 8002, 8003]
    assert request.attempt == 2
    h = Harness(
        by_instance(p8001=ConnectError, p8002=ConnectError), RetryPolicy(max_attempts=2, base_delay=0)
    )
    with pytest.raises(ConnectError):
        await h.call(Request("GET"))
    assert h.sent_to == [8001, 8002]


async def test_only_configured_statuses_are_retried_unless_all_5xx() -> None:
    h = Harness(by_instance(p8001=500))
    assert (await h.call(Request("GET"))).status == 500
    assert h.sent_to == [8001]
    h = Harness(by_instance(p8001=500), RetryPolicy(retry_all_5xx=True))
    assert (await h.call(Request("GET"))).status == 200
    h = Harness(by_instance(p8001=429), RetryPolicy(retry_statuses=frozenset({429})))
    assert (await h.call(Request("GET"))).status == 200
    assert h.sent_to == [8001, 8002]


@pytest.mark.parametrize("error", [NoHealthyInstances("svc"), DeadlineExceeded(), ValueError("bug")])
async def test_decisions_and_bugs_are_not_retried(error: Exception) -> None:
    def fail(request: Request) -> Response:
        raise error

    h = Harness(fail)
    with pytest.raises(type(error)):
        await h.call(Request("GET"))
    assert len(h.transport.requests) == 1


async def test_a_retry_with_nowhere_to_go_surfaces_the_previous_result() -> None:
    h = Harness(by_instance(p8001=503))
    h.balancer.strict = True  # all tried: the balancer has no instance left
    request = Request("GET", candidates=[A])
    assert (await h.call(request)).status == 503
    h = Harness(by_instance(p8001=ConnectError))
    h.balancer.strict = True
    with pytest.raises(ConnectError):
        await h.call(Request("POST", candidates=[A]))
    assert h.sent_to == [8001]


async def test_backoff_is_slept_on_the_clock() -> None:
    h = Harness(by_instance(p8001=503), RetryPolicy(base_delay=1.0))
    expected = full_jitter(0, base=1.0, rng=random.Random(1))  # the harness's seed
    task = asyncio.ensure_future(h.layer(Request("GET", candidates=[A, B])))
    await h.clock.run_for(expected * 0.9)
    assert h.sent_to == [8001]  # still backing off
    await h.clock.run_for(expected * 0.2)
    assert (await task).status == 200
    assert h.sent_to == [8001, 8002]
    assert h.events.of(RetryAttempt)[0].delay == expected  # type: ignore[attr-defined]


@pytest.mark.parametrize(("margin", "retried"), [(0.5, False), (2.0, True)])
async def test_no_retry_whose_backoff_ends_past_the_deadline(margin: float, retried: bool) -> None:
    h = Harness(by_instance(p8001=503), RetryPolicy(base_delay=1.0))
    delay = full_jitter(0, base=1.0, rng=random.Random(1))
    request = Request("GET", deadline=h.clock.monotonic() + delay * margin)
    response = await h.call(request)
    assert response.status == (200 if retried else 503)
    assert h.sent_to == ([8001, 8002] if retried else [8001])


async def test_budget_refusal_surfaces_the_last_result() -> None:
    budget = RetryBudget(min_retries_per_sec=0.0, percent_can_retry=0.2, clock=FakeClock())
    h = Harness(by_instance(p8001=ConnectError), budget=budget)
    request = Request("GET")
    with pytest.raises(ConnectError) as info:
        await h.call(request)
    assert request.context["retry_budget_exhausted"] is True
    assert any("retry budget" in note for note in info.value.__notes__)
    assert h.sent_to == [8001]


async def test_budget_allows_twenty_percent_of_requests_as_retries() -> None:
    budget = RetryBudget(min_retries_per_sec=0.0, percent_can_retry=0.2, clock=FakeClock())
    h = Harness(by_instance(p8001=503), budget=budget)
    statuses = [(await h.call(Request("GET"))).status for _ in range(20)]
    assert statuses.count(200) == 4  # 20 deposits of 0.2 paid for exactly four retries
    assert len(h.transport.requests) == 24


async def test_real_upstreams_retry_moves_to_the_healthy_instance(upstreams) -> None:
    failing, healthy = await upstreams("bad", status(503)), await upstreams("good")
    refused = free_port()
    transport = AiohttpTransport()
    layer = RetryLayer(
        FirstAvailable(transport),
        policy=RetryPolicy(base_delay=0.001),
        budget=RetryBudget(clock=SYSTEM_CLOCK),
        clock=SYSTEM_CLOCK,
        rng=random.Random(0),
    )
    try:
        get = Request("GET", candidates=instances(failing.port, healthy.port))
        post = Request("POST", body=b"x", candidates=instances(refused, healthy.port))
        got, posted = await layer(get), await layer(post)
    finally:
        await transport.aclose()
    assert (got.status, got.body, posted.status) == (200, b"good", 200)
    assert (failing.hits, healthy.hits) == (1, 2)


def test_is_idempotent() -> None:
    for method in ("GET", "head", "OPTIONS", "PUT", "DELETE", "TRACE"):
        assert is_idempotent(Request(method))
    assert not is_idempotent(Request("POST"))
    assert not is_idempotent(Request("PATCH"))
    assert is_idempotent(Request("PATCH", headers={"Idempotency-Key": "abc"}))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_attempts", 0),
        ("max_attempts", 1.5),
        ("base_delay", -0.1),
        ("max_delay", 0),
        ("max_delay", float("inf")),
        ("retry_statuses", frozenset({99})),
        ("retry_all_5xx", "yes"),
    ],
)
def test_bad_policy_is_a_value_error_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"^{field}: must be"):
        RetryPolicy(**{field: value})  # type: ignore[arg-type]
