"""The dependency graph: callee from the child server span or the peer attribute, stats per edge."""

from __future__ import annotations

import pytest

from meshkit.clock import FakeClock
from meshkit.plane.collector import TraceCollector
from meshkit.plane.collector.graph import percentile
from meshkit.plane.collector.record import KIND_CLIENT, KIND_CONSUMER, KIND_PRODUCER, SpanRecord
from tests.plane.collector.builders import WALL, record


def call(n: int, duration_ms: float, *, error: bool = False, start: float = WALL) -> list[SpanRecord]:
    """web -> api (api traced: a child server span) -> db (untraced: named by peer.service)."""
    return [
        record(n, 1, kind=KIND_CLIENT, service="web", start=start, duration_ms=duration_ms, error=error),
        record(n, 2, 1, service="api", start=start, duration_ms=duration_ms - 1),
        record(n, 3, 2, kind=KIND_CLIENT, service="api", start=start, attributes={"peer.service": "db"}),
        record(n, 4, 2, kind=KIND_CLIENT, service="api", start=start),  # names no peer: not an edge
    ]


async def test_edges_with_counts_errors_and_percentiles(collector: TraceCollector) -> None:
    spans = [s for n in range(1, 101) for s in call(n, float(n), error=n % 10 == 0)]
    await collector.store.insert(spans)
    api_db, web_api = await collector.get_service_dependencies()  # sorted by caller, callee
    assert web_api == {
        "caller": "web",
        "callee": "api",
        "calls": 100,
        "errors": 10,
        "error_rate": 0.1,
        "p50_ms": 50.0,
        "p99_ms": 99.0,
    }
    assert (api_db["caller"], api_db["callee"], api_db["calls"], api_db["errors"]) == ("api", "db", 100, 0)


async def test_messaging_edges_and_window(collector: TraceCollector, clock: FakeClock) -> None:
    await collector.store.insert(
        [
            record(1, 1, kind=KIND_PRODUCER, service="orders", start=WALL - 600),
            record(1, 2, 1, kind=KIND_CONSUMER, service="billing", start=WALL - 600),
            *call(2, 5.0, start=WALL - 10),
        ]
    )
    everything = await collector.get_service_dependencies()
    assert [(e["caller"], e["callee"]) for e in everything] == [
        ("api", "db"),
        ("orders", "billing"),
        ("web", "api"),
    ]
    recent = await collector.get_service_dependencies(window=60)
    assert [(e["caller"], e["callee"]) for e in recent] == [("api", "db"), ("web", "api")]
    clock.advance(120)
    assert await collector.get_service_dependencies(window=60) == []


@pytest.mark.parametrize("window", [0, -5, float("inf"), True])
async def test_bad_window(collector: TraceCollector, window: float) -> None:
    with pytest.raises(ValueError, match=r"^window: "):
        await collector.get_service_dependencies(window)


def test_nearest_rank_percentile() -> None:
    assert percentile([1.0], 0.99) == 1.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0
    assert percentile([float(v) for v in range(1, 1001)], 0.99) == 990.0
