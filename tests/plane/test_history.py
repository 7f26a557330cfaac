"""Metric history: rates and percentiles from counter deltas, the bounded ring, windows, the loop."""

from __future__ import annotations

import asyncio
import logging
import math

import pytest

from meshkit.clock import FakeClock
from meshkit.observe.metrics import MeshMetrics
from meshkit.plane.history import (
    MetricsHistory,
    Reading,
    ServiceCounters,
    quantile,
    read_counters,
)

INF = math.inf


class Counters:
    """A scripted mesh: cumulative totals the test moves forward."""

    def __init__(self) -> None:
        self.services: dict[str, ServiceCounters] = {}
        self.score: float | None = 1.0
        self.fail = False

    def add(self, name: str, calls: int, errors: int, fast: int) -> None:
        """`calls` more calls of which `errors` failed and `fast` took <= 0.1 s (the rest <= 1 s)."""
        old = self.services.get(name, ServiceCounters(0.0, 0.0, ((0.1, 0.0), (1.0, 0.0), (INF, 0.0))))
        b = dict(old.buckets)
        buckets = ((0.1, b[0.1] + fast), (1.0, b[1.0] + calls), (INF, b[INF] + calls))
        self.services[name] = ServiceCounters(old.requests + calls, old.errors + errors, buckets)

    async def read(self) -> Reading:
        if self.fail:
            raise OSError("metrics unavailable")
        return Reading(dict(self.services), self.score)


def test_quantile_interpolates_within_buckets_like_histogram_quantile() -> None:
    buckets = ((0.1, 50.0), (0.5, 100.0), (INF, 100.0))
    assert quantile(0.5, buckets) == pytest.approx(0.1)
    assert quantile(0.99, buckets) == pytest.approx(0.1 + 0.4 * 49 / 50)
    assert quantile(0.25, buckets) == pytest.approx(0.05)
    assert quantile(0.99, ((0.1, 10.0), (INF, 20.0))) == 0.1  # in +Inf: the highest finite bound
    assert quantile(0.5, ((0.1, 0.0), (INF, 0.0))) is None
    assert quantile(0.5, ()) is None


def test_read_counters_sums_methods_and_status_classes_per_service() -> None:
    metrics = MeshMetrics()
    metrics.set_known_services(["api", "db"])
    metrics.observe_request("api", 200, 0.004, method="GET")
    metrics.observe_request("api", 503, 0.3, "server_error", method="POST")
    metrics.observe_request("db", 200, 0.02)
    counters = read_counters(metrics.registry)
    assert counters["api"].requests == 2 and counters["api"].errors == 1
    assert counters["db"].requests == 1 and counters["db"].errors == 0
    buckets = dict(counters["api"].buckets)
    assert buckets[0.005] == 1 and buckets[0.5] == 2 and buckets[INF] == 2


async def test_samples_hold_rates_error_rates_and_percentiles_from_deltas() -> None:
    clock, mesh = FakeClock(), Counters()
    history = MetricsHistory(mesh.read, interval=10.0, clock=clock)
    mesh.add("api", 1000, 1000, 1000)  # before the baseline: must not count
    assert await history.sample() is None
    mesh.add("api", 100, 5, 90)
    mesh.score = 0.75
    clock.advance(10.0)
    sample = await history.sample()
    assert sample is not None and sample.health_score == 0.75
    api = sample.services["api"]
    assert api.requests == 100 and api.request_rate == pytest.approx(10.0)
    assert api.error_rate == pytest.approx(0.05) and sample.success_rate == pytest.approx(0.95)
    assert api.p50_ms == pytest.approx(100 * 50 / 90, rel=1e-3)
    assert api.p99_ms == pytest.approx(100 + 900 * 9 / 10, rel=1e-3)


async def test_idle_services_take_no_room_and_show_zero_rate_in_their_series() -> None:
    clock, mesh = FakeClock(), Counters()
    history = MetricsHistory(mesh.read, interval=10.0, clock=clock)
    mesh.add("api", 10, 0, 10)
    await history.sample()
    for _ in range(3):
        clock.advance(10.0)
        await history.sample()
    latest = history.latest()
    assert latest is not None and latest.services == {} and latest.success_rate is None
    points = history.series("api")
    assert [p["request_rate"] for p in points] == [0.0, 0.0, 0.0]
    assert all(p["p99_ms"] is None for p in points)
    assert [p["error_rate"] for p in history.series()] == [None, None, None]


async def test_a_counter_reset_counts_from_zero() -> None:
    clock, mesh = FakeClock(), Counters()
    history = MetricsHistory(mesh.read, interval=10.0, clock=clock)
    mesh.add("api", 500, 0, 500)
    await history.sample()
    mesh.services = {}
    mesh.add("api", 20, 2, 20)  # the process restarted: totals below the previous reading
    clock.advance(10.0)
    sample = await history.sample()
    assert sample is not None and sample.services["api"].requests == 20
    assert sample.services["api"].error_rate == pytest.approx(0.1)


async def test_the_ring_is_bounded_and_series_filters_by_time() -> None:
    clock, mesh = FakeClock(), Counters()
    history = MetricsHistory(mesh.read, interval=1.0, max_samples=5, clock=clock)
    await history.sample()
    for _ in range(12):
        mesh.add("api", 4, 1, 4)
        clock.advance(1.0)
        await history.sample()
    assert len(history) == 5
    points = history.series()
    assert len(points) == 5 and all(p["request_rate"] == pytest.approx(4.0) for p in points)
    assert all(p["error_rate"] == pytest.approx(0.25) for p in points)
    assert len(history.series(since=points[2]["at"])) == 2


async def test_window_stats_cover_the_window_not_just_the_last_interval() -> None:
    clock, mesh = FakeClock(), Counters()
    history = MetricsHistory(mesh.read, interval=10.0, window=30.0, clock=clock)
    await history.sample()
    mesh.add("api", 60, 6, 60)
    for _ in range(5):  # traffic in the first interval only, then four quiet ones
        clock.advance(10.0)
        await history.sample()
        if len(history) == 2:
            seconds, stats = history.window_stats()
            assert seconds == 20.0 and stats["api"].request_rate == pytest.approx(3.0)
    seconds, stats = history.window_stats()
    assert seconds == 30.0 and stats == {}  # the calls fell out of the last 30 s


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("interval", {"interval": 0}),
        ("interval", {"interval": float("inf")}),
        ("max_samples", {"max_samples": 2.5}),
        ("max_samples", {"max_samples": 0}),
        ("window", {"window": -1}),
    ],
)
def test_bad_parameters_raise_naming_the_field(field: str, kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=f"^{field}: must be"):
        MetricsHistory(Counters().read, **kwargs)  # type: ignore[arg-type]


def test_bad_since_raises() -> None:
    with pytest.raises(ValueError, match=r"^since: must be"):
        MetricsHistory(Counters().read).series(since="yesterday")  # type: ignore[arg-type]


async def test_the_loop_samples_on_its_interval_and_survives_failed_reads(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, mesh = FakeClock(), Counters()
    seen: list[float] = []

    async def on_sample(sample: object) -> None:
        seen.append(clock.monotonic())

    history = MetricsHistory(mesh.read, interval=10.0, clock=clock, on_sample=on_sample)  # type: ignore[arg-type]
    history.start()
    await asyncio.sleep(0)
    await clock.run_for(30.5, step=0.5)
    assert len(history) == 3 and seen == [1010.0, 1020.0, 1030.0]
    mesh.fail = True
    with caplog.at_level(logging.WARNING):
        await clock.run_for(10.0, step=0.5)
    assert "metrics unavailable" in caplog.text and len(history) == 3
    mesh.fail = False
    await clock.run_for(10.0, step=0.5)
    assert len(history) == 4
    await history.stop()
    await clock.run_for(20.0, step=0.5)
    assert len(history) == 4
