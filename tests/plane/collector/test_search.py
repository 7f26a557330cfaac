"""Search by every filter, validation, and one whole trace as a tree with its summary."""

from __future__ import annotations

from typing import Any

import pytest

from meshkit.plane.collector import TraceCollector
from meshkit.plane.collector.record import KIND_CLIENT
from tests.plane.collector.builders import WALL, record, sid, tid


async def seed(collector: TraceCollector) -> None:
    """Trace n starts at WALL + n; trace 3 has an error, trace 4 a slow db span."""
    spans = []
    for n in range(1, 6):
        spans += [
            record(
                n,
                1,
                service="web",
                name="GET /",
                start=WALL + n,
                duration_ms=100,
                attributes={"user": f"u{n}"},
            ),
            record(
                n,
                2,
                1,
                service="web",
                name="call api",
                kind=KIND_CLIENT,
                start=WALL + n + 0.01,
                duration_ms=50,
            ),
            record(
                n, 3, 2, service="api", name="lookup", start=WALL + n + 0.02, duration_ms=40, error=n == 3
            ),
            record(
                n, 4, 3, service="db", name="query", start=WALL + n + 0.03, duration_ms=500 if n == 4 else 5
            ),
        ]
    await collector.store.insert(spans)


def ids(results: list[dict[str, Any]]) -> list[int]:
    return [int(r["trace_id"], 16) for r in results]


async def test_filters(collector: TraceCollector) -> None:
    await seed(collector)
    assert ids(await collector.search_traces()) == [5, 4, 3, 2, 1]  # newest first
    assert ids(await collector.search_traces(service_name="db", limit=2)) == [5, 4]
    assert ids(await collector.search_traces(operation_name="lookup", error_only=True)) == [3]
    assert ids(await collector.search_traces(error_only=True)) == [3]
    assert ids(await collector.search_traces(min_duration=200)) == [4]
    assert ids(await collector.search_traces(service_name="db", max_duration=5)) == [5, 3, 2, 1]
    assert ids(await collector.search_traces(service_name="api", min_duration=41)) == []
    assert ids(await collector.search_traces(attribute=("user", "u2"))) == [2]
    assert ids(await collector.search_traces(start=WALL + 2, end=WALL + 3.5)) == [3, 2]
    assert await collector.search_traces(service_name="nobody") == []


async def test_summary_fields(collector: TraceCollector) -> None:
    await seed(collector)
    (found,) = await collector.search_traces(operation_name="lookup", error_only=True)
    assert found == {
        "trace_id": tid(3),
        "root_operation": "GET /",
        "root_service": "web",
        "start": pytest.approx(WALL + 3),
        "duration_ms": pytest.approx(100),
        "span_count": 4,
        "error_count": 1,
        "services": ["api", "db", "web"],
    }


async def test_typed_attribute_values_match_their_text(collector: TraceCollector) -> None:
    await collector.store.insert([record(1, 1, attributes={"code": 500, "retry": True}), record(2, 1)])
    assert ids(await collector.search_traces(attribute=("code", "500"))) == [1]
    assert ids(await collector.search_traces(attribute=("retry", "true"))) == [1]
    assert ids(await collector.search_traces(attribute=("retry", "false"))) == []


async def test_attribute_text_prefilter_never_decides_alone(collector: TraceCollector) -> None:
    await collector.store.insert(
        [
            record(1, 1, attributes={"user": "u7"}),
            record(2, 1, attributes={"user": "u70", "other": "u7"}),
            record(3, 1, attributes={"user": 'say "hi"\n'}),
        ]
    )
    assert ids(await collector.search_traces(attribute=("user", "u7"))) == [1]
    assert ids(await collector.search_traces(attribute=("user", 'say "hi"\n'))) == [3]


async def test_duration_only_search_over_many_spans_uses_either_plan(collector: TraceCollector) -> None:
    spans = [record(i + 1, 1, start=WALL + i / 1000, duration_ms=i % 100) for i in range(6000)]
    await collector.store.insert(spans)
    rare = await collector.search_traces(min_duration=99, limit=3)  # few matches: the duration index
    assert ids(rare) == [6000, 5900, 5800]
    common = await collector.search_traces(min_duration=1, limit=3)  # many: stream by time
    assert ids(common) == [6000, 5999, 5998]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"min_duration": -1}, "min_duration"),
        ({"max_duration": float("nan")}, "max_duration"),
        ({"min_duration": 10, "max_duration": 5}, "min_duration"),
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"attribute": ("", "x")}, "attribute"),
        ({"start": 10, "end": 5}, "start"),
        ({"end": -1}, "end"),
    ],
)
async def test_bad_parameters_name_the_field(
    collector: TraceCollector, kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValueError, match=f"^{field}: "):
        await collector.search_traces(**kwargs)


async def test_trace_tree_with_self_time(collector: TraceCollector) -> None:
    await seed(collector)
    trace = await collector.get_trace(tid(4).upper())
    assert trace is not None
    (root,) = trace["spans"]
    assert [root["operation"], root["children"][0]["operation"]] == ["GET /", "call api"]
    query = root["children"][0]["children"][0]["children"][0]
    assert (query["service"], query["duration_ms"], query["children"]) == ("db", 500, [])
    summary = trace["summary"]
    assert (summary["span_count"], summary["root_operation"], summary["duration_ms"]) == (
        4,
        "GET /",
        pytest.approx(530),
    )
    # self time: web = (100 - 50 under "call api") + (50 - 40 under "lookup");
    # api = 40 - 30 (the db span, clipped at the end of its parent)
    assert summary["time_per_service_ms"] == pytest.approx({"web": 60, "api": 10, "db": 500}, abs=1e-3)


async def test_orphans_and_cycles_stay_visible(collector: TraceCollector) -> None:
    await collector.store.insert(
        [
            record(7, 1, service="a", start=WALL),
            record(7, 2, 99, service="b", start=WALL + 1),  # parent never arrived
            record(7, 3, 4, service="c", start=WALL + 2),  # 3 and 4 name each other as parent
            record(7, 4, 3, service="c", start=WALL + 3),
        ]
    )
    trace = await collector.get_trace(tid(7))
    assert trace is not None
    roots = trace["spans"]
    assert [(r["span_id"], r["orphan"]) for r in roots] == [(sid(1), False), (sid(2), True), (sid(3), False)]
    assert [c["span_id"] for c in roots[2]["children"]] == [sid(4)]
    assert trace["summary"]["root_operation"] == "op" and trace["summary"]["root_service"] == "a"


async def test_unknown_and_malformed_trace_ids(collector: TraceCollector) -> None:
    assert await collector.get_trace(tid(123)) is None
    for bad in ("abc", "g" * 32, tid(1) + "0"):
        with pytest.raises(ValueError, match=r"^trace_id: "):
            await collector.get_trace(bad)
