"""Traces: /call spans reach the collector, a caller's trace continues, OTLP ingest and search."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.plane.api.conftest import Api, StartApi

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


async def _wait_for_traces(api: Api, **params: Any) -> list[dict[str, Any]]:
    for _ in range(100):
        api.plane.tracer.force_flush()
        code, found = await api.request("GET", "/traces", params=params)
        assert code == 200
        if found:
            return list(found)
        await asyncio.sleep(0.05)
    return []


async def test_call_spans_are_collected_and_continue_the_callers_trace(api: Api, upstreams) -> None:
    up = await upstreams("t")
    await api.register("traced", up.port)
    traceparent = f"00-{CALLER_TRACE}-00f067aa0ba902b7-01"
    code, result = await api.request(
        "POST", "/call", json={"service_name": "traced"}, headers={"traceparent": traceparent}
    )
    assert code == 200 and result["trace_id"] == CALLER_TRACE
    body = {"service_name": "traced", "headers": {"X-Trace-Id": "a" * 32, "X-Span-Id": "b" * 16}}
    code, result = await api.request("POST", "/call", json=body)
    assert result["trace_id"] == "a" * 32  # the seed's headers, in the body, work too

    found = await _wait_for_traces(api, service_name="meshkit-plane", operation_name="call traced")
    assert CALLER_TRACE in {t["trace_id"] for t in found}
    code, trace = await api.request("GET", f"/traces/{CALLER_TRACE}")
    assert code == 200 and trace["trace_id"] == CALLER_TRACE
    names = str(trace)
    assert "call traced" in names and "attempt traced" in names


async def test_trace_sample_ratio_zero_keeps_no_new_trace_but_follows_a_sampled_caller(
    start_api: StartApi, upstreams
) -> None:
    api = await start_api(trace_sample_ratio=0.0)
    up = await upstreams("t")
    await api.register("quiet", up.port)
    for _ in range(5):  # new traces: none kept at ratio 0
        code, result = await api.request("POST", "/call", json={"service_name": "quiet"})
        assert code == 200 and len(result["trace_id"]) == 32  # the call still has its trace id
    traceparent = f"00-{CALLER_TRACE}-00f067aa0ba902b7-01"  # a sampled caller: its decision is followed
    code, result = await api.request(
        "POST", "/call", json={"service_name": "quiet"}, headers={"traceparent": traceparent}
    )
    assert code == 200 and result["trace_id"] == CALLER_TRACE
    found = await _wait_for_traces(api, service_name="meshkit-plane")
    assert [t["trace_id"] for t in found] == [CALLER_TRACE]
    assert found[0]["span_count"] == 2  # the call span and its attempt


async def test_otlp_json_ingest_search_and_dependencies(api: Api) -> None:
    now = time.time_ns() - 10_000_000_000
    span = {
        "traceId": "1" * 32,
        "spanId": "2" * 16,
        "name": "GET /orders",
        "kind": 3,
        "startTimeUnixNano": str(now),
        "endTimeUnixNano": str(now + 5_000_000),
        "attributes": [{"key": "peer.service", "value": {"stringValue": "db"}}],
    }
    export = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "orders"}}]},
                "scopeSpans": [{"spans": [span]}],
            }
        ]
    }
    code, reply = await api.request("POST", "//v1/traces", json=export)
    assert code == 200, reply
    code, found = await api.request("GET", "/traces", params={"service_name": "orders"})
    assert [t["trace_id"] for t in found] == ["1" * 32] and found[0]["duration_ms"] == 5.0
    code, found = await api.request("GET", "/traces", params={"service_name": "orders", "min_duration": 6})
    assert found == []
    code, edges = await api.request("GET", "/dependencies")
    assert code == 200 and isinstance(edges, list)
    code, reply = await api.request(
        "POST", "//v1/traces", data=b"\xff\x00garbage", headers={"Content-Type": "application/x-protobuf"}
    )
    assert code == 400
    code, _ = await api.request("POST", "//v1/traces", token=None, json=export)
    assert code == 401
