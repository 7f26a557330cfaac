"""The default client stack end to end against real servers on 127.0.0.1."""

from __future__ import annotations

import random
from functools import partial

import pytest

from meshkit import NoHealthyInstances, Request, Response
from meshkit.client import MeshClient
from meshkit.events import BreakerTransition, EventRecorder, RetryAttempt
from meshkit.resilience.breaker import BreakerPolicy
from meshkit.service import Service
from tests.support.servers import free_port, status


def client_for(ports: list[int], **kwargs) -> MeshClient:  # type: ignore[no-untyped-def]
    kwargs.setdefault("rng", random.Random(7))
    return MeshClient.static({"svc": [("127.0.0.1", p) for p in ports]}, **kwargs)


async def test_round_robin_spreads_calls_over_instances(upstreams) -> None:
    ups = [await upstreams(n) for n in "abc"]
    async with client_for([u.port for u in ups], strategy="round_robin") as client:
        bodies = [(await client.request("svc", "GET", f"/{i}")).text() for i in range(9)]
    assert sorted(bodies) == sorted("abc" * 3)
    assert [u.hits for u in ups] == [3, 3, 3]


async def test_failing_instance_is_retried_elsewhere_and_its_breaker_opens(upstreams) -> None:
    good = await upstreams("good")
    bad = await upstreams("bad", status(503))
    client = client_for(
        [good.port, bad.port], strategy="round_robin", breaker=BreakerPolicy(failure_threshold=2)
    )
    recorder = EventRecorder(client.bus)
    async with client:
        results = [await client.request("svc", "GET", "/x") for _ in range(10)]
    assert all(r.status == 200 and r.text() == "good" for r in results)
    assert bad.hits == 2  # two failures opened the breaker; no traffic after that
    assert client.parts.breakers.states()[f"svc-127.0.0.1-{bad.port}"] == "open"
    assert [e.new for e in recorder.of(BreakerTransition)] == ["open"]  # type: ignore[attr-defined]
    assert len(recorder.of(RetryAttempt)) == 2


async def test_post_without_idempotency_key_is_not_retried(upstreams) -> None:
    bad = await upstreams("bad", status(503))
    good = await upstreams("good")
    async with client_for([bad.port, good.port], strategy="round_robin") as client:
        resp = await client.call(Request("POST", "/orders", service="svc", body=b"{}"))
        keyed = await client.call(Request("POST", "/orders", {"Idempotency-Key": "k1"}, b"{}", service="svc"))
    assert resp.status == 503
    assert keyed.status == 200


async def test_refused_connections_fail_over_even_for_post(upstreams) -> None:
    good = await upstreams("good")
    async with client_for([free_port(), good.port], strategy="round_robin") as client:
        results = [await client.call(Request("POST", "/", service="svc")) for _ in range(4)]
    assert all(r.status == 200 for r in results)


async def test_unknown_service_raises_no_healthy_instances() -> None:
    async with client_for([free_port()]) as client:
        with pytest.raises(NoHealthyInstances, match="nope"):
            await client.request("nope")


async def test_interceptors_change_request_and_response(upstreams) -> None:
    seen: list[str] = []

    async def echo(request):  # type: ignore[no-untyped-def]
        from aiohttp import web

        seen.append(request.headers.get("X-Tenant", ""))
        return web.Response(text="ok")

    up = await upstreams("a", echo)

    async def add_tenant(request: Request) -> None:
        request.headers["X-Tenant"] = "t1"

    async def tag(request: Request, response: Response) -> Response:
        response.headers["X-Seen-Path"] = request.path
        return response

    async with client_for([up.port]) as client:
        client.add_request_interceptor(add_tenant)
        client.add_response_interceptor(tag)
        resp = await client.request("svc", "GET", "/p")
    assert seen == ["t1"]
    assert resp.headers["X-Seen-Path"] == "/p"


async def test_interceptors_added_after_calls_run_from_the_next_call(upstreams) -> None:
    up = await upstreams("a")
    seen: list[str] = []

    async def note(request: Request) -> None:
        seen.append(request.path)

    async def tag(response: Response) -> Response:
        response.headers["X-Tagged"] = "1"
        return response

    async with client_for([up.port]) as client:
        first = await client.request("svc", "GET", "/before")  # built while no interceptor exists
        client.add_request_interceptor(note)
        second = await client.request("svc", "GET", "/after")
        client.add_response_interceptor(tag)
        third = await client.request("svc", "GET", "/later")
    assert seen == ["/after", "/later"]
    assert "X-Tagged" not in first.headers and "X-Tagged" not in second.headers
    assert third.headers["X-Tagged"] == "1"
    assert "interceptors" in client.stack.roles


async def test_stack_is_editable_and_the_next_call_uses_it(upstreams) -> None:
    up = await upstreams("a")
    calls: list[str] = []

    class Tag:
        def __init__(self, inner: Service, *, label: str) -> None:
            self.inner, self.label = inner, label

        async def __call__(self, request: Request) -> Response:
            calls.append(self.label)
            return await self.inner(request)

    async with client_for([up.port]) as client:
        await client.request("svc")
        client.stack.insert_after("retry", "tag", partial(Tag, label="after-retry"))
        await client.request("svc")
        client.stack.remove("tag")
        await client.request("svc")
    assert calls == ["after-retry"]
    assert "tag" not in client.describe()


async def test_strategy_change_and_bad_names(upstreams) -> None:
    up = await upstreams("a")
    async with client_for([up.port]) as client:
        client.set_strategy("least_connections")
        assert "least_connections" in client.describe()
        assert (await client.request("svc")).status == 200
        with pytest.raises(ValueError, match="strategy"):
            client.set_strategy("fastest")
    with pytest.raises(ValueError, match="timeout"):
        client_for([up.port], timeout=0)
    with pytest.raises(ValueError, match="interceptor"):
        client.add_request_interceptor(lambda r: r)  # type: ignore[arg-type,return-value]


async def test_tracer_and_metrics_given_to_the_client_are_in_its_stack(upstreams) -> None:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from meshkit.observe.metrics import MeshMetrics
    from meshkit.observe.tracing import Tracer

    up = await upstreams("a")
    spans = InMemorySpanExporter()
    tracer = Tracer("caller", processors=[SimpleSpanProcessor(spans)])
    metrics = MeshMetrics()
    metrics.set_known_services(["svc"])
    async with client_for([up.port], tracer=tracer, metrics=metrics) as client:
        request = Request("GET", "/t", service="svc")
        await client.call(request)
    assert client.stack.roles[:2] == ["metrics", "trace"]
    assert "trace-attempt" in client.stack.roles
    names = sorted(s.name for s in spans.get_finished_spans())
    assert names == ["attempt svc", "call svc"]
    assert len(request.context["trace_id"]) == 32
    text = metrics.render()[0].decode()
    assert 'service="svc"' in text
