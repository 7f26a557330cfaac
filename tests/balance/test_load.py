from __future__ import annotations

import asyncio
import math

import pytest

from meshkit.balance import LoadLayer, LoadTracker, PeakEwma
from meshkit.balance.load import PENALTY
from meshkit.clock import FakeClock
from meshkit.errors import ConnectError
from meshkit.transport.mock import MockTransport
from meshkit.types import Request, Response
from tests.balance.fleet import instance, request


def test_peak_ewma_jumps_to_a_peak_and_decays_below_it() -> None:
    ewma = PeakEwma(decay_time=10.0, now=0.0)
    assert ewma.observe(0.5, now=1.0) == 0.5  # above: taken at once
    w = math.exp(-10.0 / 10.0)
    assert ewma.observe(0.1, now=11.0) == pytest.approx(0.5 * w + 0.1 * (1 - w))
    assert ewma.observe(2.0, now=11.0) == 2.0


def test_peak_ewma_gives_recent_samples_more_weight() -> None:
    soon, later = PeakEwma(10.0, 0.0), PeakEwma(10.0, 0.0)
    for e in (soon, later):
        e.observe(1.0, 0.0)
    assert soon.observe(0.0, 1.0) > later.observe(0.0, 30.0)


@pytest.mark.parametrize("bad", [0, -1.0, True, "10"])
def test_decay_time_must_be_positive(bad: object) -> None:
    with pytest.raises(ValueError, match=r"^decay_time: must be a number of seconds > 0"):
        LoadTracker(decay_time=bad)  # type: ignore[arg-type]


def test_failure_latency_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match=r"^failure_latency: must be a number of seconds >= 0"):
        LoadTracker(failure_latency=-1)


def test_tracker_counts_in_flight_and_latency() -> None:
    clock = FakeClock()
    load = LoadTracker(clock=clock)
    first = load.start("a")
    second = load.start("a")
    assert load.in_flight("a") == 2 and load.in_flight("b") == 0
    clock.advance(0.2)
    load.finish("a", first, failed=False)
    assert load.in_flight("a") == 1
    assert load.latency("a") == pytest.approx(0.2)
    assert load.cost("a") == pytest.approx(0.2 * 2)  # ewma x (in flight + 1), no time passed
    clock.advance(0.1)
    load.finish("a", second, failed=False)
    assert load.in_flight("a") == 0
    assert load.snapshot()["a"]["in_flight"] == 0


def test_cost_before_any_sample() -> None:
    load = LoadTracker(clock=FakeClock())
    assert load.cost("new") == 0.0  # never seen: try it
    load.start("busy")
    assert load.cost("busy") == PENALTY + 1  # busy with no answer yet: avoid it


def test_cost_decays_while_an_instance_rests() -> None:
    clock = FakeClock()
    load = LoadTracker(clock=clock, decay_time=10.0)
    load.finish("a", load.start("a") - 1.0, failed=False)
    before = load.cost("a")
    clock.advance(30.0)
    assert load.cost("a") < before * 0.1


def test_a_fast_failure_does_not_look_fast() -> None:
    clock = FakeClock()
    load = LoadTracker(clock=clock, failure_latency=1.0)
    load.finish("a", load.start("a"), failed=True)
    assert load.latency("a") == 1.0


def test_forget_drops_an_instance() -> None:
    load = LoadTracker(clock=FakeClock())
    load.start("a")
    load.forget("a")
    assert load.in_flight("a") == 0 and "a" not in load.snapshot()


async def test_load_layer_tracks_each_attempt_and_mirrors_connections() -> None:
    clock = FakeClock()
    load = LoadTracker(clock=clock)
    target = instance("a")
    release = asyncio.Event()
    seen_in_flight: list[int] = []

    async def handler(req: Request) -> Response:
        seen_in_flight.append(target.connections)
        await release.wait()
        clock.advance(0.05)
        return Response(200)

    layer = LoadLayer(MockTransport(handler), tracker=load)
    calls = [asyncio.create_task(layer(request(instance=target))) for _ in range(2)]
    await asyncio.sleep(0)
    assert load.in_flight("a") == 2 and target.connections == 2
    release.set()
    await asyncio.gather(*calls)
    assert seen_in_flight == [1, 2]
    assert load.in_flight("a") == 0 and target.connections == 0
    assert load.latency("a") == pytest.approx(0.1)  # the second one ended after 0.1 s


async def test_load_layer_counts_errors_and_5xx_as_failures() -> None:
    clock = FakeClock()
    load = LoadTracker(clock=clock, failure_latency=2.0)
    target = instance("a")

    def refuse(req: Request) -> Response:
        raise ConnectError("refused", "a")

    with pytest.raises(ConnectError):
        await LoadLayer(MockTransport(refuse), tracker=load)(request(instance=target))
    assert load.latency("a") == 2.0 and load.in_flight("a") == 0
    other = LoadTracker(clock=clock, failure_latency=3.0)
    response = await LoadLayer(MockTransport(lambda r: Response(503)), tracker=other)(
        request(instance=target)
    )
    assert response.status == 503 and other.latency("a") == 3.0


async def test_load_layer_passes_through_without_an_instance() -> None:
    load = LoadTracker(clock=FakeClock())
    response = await LoadLayer(MockTransport(lambda r: Response(204)), tracker=load)(request())
    assert response.status == 204 and load.snapshot() == {}
