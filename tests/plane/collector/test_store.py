"""The span store: inserts, duplicates, retention by count and age, persistence, validation."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from meshkit.clock import FakeClock
from meshkit.plane.collector import SpanStore, StoreUnavailable
from tests.plane.collector.builders import WALL, record


async def test_insert_counts_and_ignores_duplicates(clock: FakeClock) -> None:
    store = SpanStore(None, clock=clock)
    assert await store.insert([record(1, 1), record(1, 2, 1)]) == 2
    assert await store.insert([record(1, 2, 1), record(1, 3, 1)]) == 1  # an exporter's retry
    assert store.span_count == 3
    store.close()


async def test_flood_beyond_max_spans_drops_the_oldest_and_counts_them(clock: FakeClock) -> None:
    store = SpanStore(None, max_spans=100, clock=clock)
    for batch in range(5):
        await store.insert([record(batch * 100 + i + 1, 1) for i in range(60)])
    assert store.span_count == 100
    assert store.dropped_spans == store.dropped_by_size == 200
    kept = await store.read(lambda c: [int(r[0], 16) for r in c.execute("SELECT trace_id FROM spans")])
    assert sorted(kept) == [b * 100 + i + 1 for b in (3, 4) for i in range(60)][-100:]
    store.close()


async def test_age_retention_refuses_old_spans_and_expires_stored_ones(clock: FakeClock) -> None:
    store = SpanStore(None, max_age=3600, clock=clock)
    assert await store.insert([record(1, 1, start=WALL - 7200), record(2, 1, start=WALL - 60)]) == 1
    assert store.dropped_by_age == 1
    clock.advance(3600)
    assert await store.expire() == 1
    assert store.span_count == 0 and store.dropped_spans == 2
    store.close()


async def test_expiry_is_incremental(clock: FakeClock) -> None:
    store = SpanStore(None, max_age=100, expire_batch=10, clock=clock)
    await store.insert([record(i + 1, 1, start=WALL - 50) for i in range(25)])
    clock.advance(60)
    await store.expire()
    assert store.span_count == 15
    await store.expire()
    await store.expire()
    assert store.span_count == 0 and store.dropped_by_age == 25
    store.close()


async def test_file_store_survives_reopen(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "data" / "spans.db"
    store = SpanStore(path, clock=clock)
    await store.insert([record(1, 1), record(1, 2, 1)])
    rows = await store.read(lambda c: c.execute("SELECT COUNT(*) FROM spans").fetchone()[0])
    assert rows == 2  # the reader connection sees the writer's commit
    store.close()
    reopened = SpanStore(path, clock=clock)
    assert reopened.span_count == 2
    assert reopened.path is not None and reopened.path.exists()
    reopened.close()


def test_blocking_insert_for_sdk_threads(clock: FakeClock) -> None:
    store = SpanStore(None, clock=clock)
    assert store.insert_blocking([record(1, 1)]) == 1
    store.close()
    with pytest.raises(RuntimeError):
        store.insert_blocking([record(2, 1)])


async def test_a_closed_store_answers_503(clock: FakeClock) -> None:
    store = SpanStore(None, clock=clock)
    store.close()
    with pytest.raises(StoreUnavailable):
        await store.insert([record(1, 1)])
    with pytest.raises(StoreUnavailable):
        await store.read(lambda c: c.execute("SELECT 1").fetchone())


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_age": 0}, "max_age"),
        ({"max_spans": 0}, "max_spans"),
        ({"max_spans": 1.5}, "max_spans"),
        ({"expire_batch": 0}, "expire_batch"),
    ],
)
def test_bad_settings_name_the_field(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}: "):
        SpanStore(None, **kwargs)  # type: ignore[arg-type]


async def test_concurrent_exports_share_transactions(clock: FakeClock) -> None:
    store = SpanStore(None, clock=clock)
    batches = [[record(b * 10 + i + 1, 1) for i in range(10)] for b in range(50)]
    batches.append(batches[0])  # a retried export: all duplicates
    counts = await asyncio.gather(*(store.insert(batch) for batch in batches))
    assert counts == [10] * 50 + [0]
    assert store.span_count == 500
    assert 1 <= store._group.commits < 51
    store.close()
