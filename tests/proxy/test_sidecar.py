"""The sidecar end to end: a real control plane (subprocess), real instances, real HTTP through the proxy."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from aiohttp import web
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from yarl import URL

from meshkit.observe.tracing import Tracer
from meshkit.proxy import SidecarProxy
from meshkit.remote import ControlPlaneClient
from meshkit.resilience.breaker import BreakerPolicy
from meshkit.types import LoadBalancerStrategy
from tests.conftest import StartUpstream
from tests.support.plane import PlaneProcess, start_plane
from tests.support.servers import hang, status


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlaneProcess]:
    proc = start_plane(tmp_path_factory.mktemp("plane") / "data")
    yield proc
    proc.stop()


@pytest.fixture
async def plane_client(plane: PlaneProcess) -> AsyncIterator[ControlPlaneClient]:
    async with ControlPlaneClient(plane.url, plane.token) as client:
        yield client


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        yield session


async def sidecar(plane: PlaneProcess, **options: object) -> SidecarProxy:
    proxy = SidecarProxy.for_control_plane("127.0.0.1:0", plane.url, plane.token, **options)  # type: ignore[arg-type]
    await proxy.start()
    return proxy


async def echo(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    headers = {
        "X-Seen-" + k: v for k, v in request.headers.items() if k.lower().startswith(("x-", "keep", "te"))
    }
    headers.update({"Connection": "keep-alive, X-Private", "X-Private": "hop", "X-Kept": "yes"})
    return web.Response(status=201, body=body, headers=headers)


async def test_routes_method_path_headers_and_body_to_an_instance(
    plane: PlaneProcess,
    plane_client: ControlPlaneClient,
    upstreams: StartUpstream,
    http: aiohttp.ClientSession,
) -> None:
    up = await upstreams("echo", echo)
    sid = (await plane_client.register("echo-svc", "127.0.0.1", up.port))["service_id"]
    proxy = await sidecar(plane)
    try:
        headers = {"X-Custom": "1", "Connection": "X-Drop", "X-Drop": "secret", "Keep-Alive": "timeout=5"}
        async with http.post(f"{proxy.url}/echo-svc/items/7?q=a", data=b"payload", headers=headers) as resp:
            assert resp.status == 201
            assert await resp.read() == b"payload"
            assert resp.headers["X-Seen-X-Custom"] == "1"
            assert "X-Seen-X-Drop" not in resp.headers  # named by Connection: hop-by-hop, not forwarded
            assert "X-Seen-Keep-Alive" not in resp.headers
            assert resp.headers["X-Kept"] == "yes"
            assert "X-Private" not in resp.headers  # hop-by-hop on the way back too
        assert up.paths == ["/items/7?q=a"]
        async with http.get(f"{proxy.url}/echo-svc") as resp:
            assert resp.status == 201
        assert up.paths[-1] == "/"
    finally:
        await proxy.stop()
        await plane_client.deregister(sid)


async def test_bad_targets_are_400_json_and_unknown_services_503(
    plane: PlaneProcess, upstreams: StartUpstream, http: aiohttp.ClientSession
) -> None:
    proxy = await sidecar(plane)
    try:
        for path in ("/Bad_Name/x", "/svc/..%2fadmin", "/svc/%2e%2e/x"):
            async with http.get(URL(proxy.url + path, encoded=True)) as resp:  # sent as written
                assert resp.status == 400, path
                body = await resp.json()
                assert body["error"] in ("BadRoute", "UnsafePath") and body["detail"]
        async with http.get(f"{proxy.url}/nobody-here/x") as resp:
            assert resp.status == 503
            body = await resp.json()
            assert body["error"] == "NoHealthyInstances"
            assert "nobody-here" in body["detail"]
    finally:
        await proxy.stop()


async def test_body_over_the_cap_is_413(
    plane: PlaneProcess,
    plane_client: ControlPlaneClient,
    upstreams: StartUpstream,
    http: aiohttp.ClientSession,
) -> None:
    up = await upstreams("big")
    sid = (await plane_client.register("big-svc", "127.0.0.1", up.port))["service_id"]
    proxy = await sidecar(plane, max_body=1000)
    try:
        async with http.post(f"{proxy.url}/big-svc/x", data=b"x" * 1001) as resp:
            assert resp.status == 413
            assert (await resp.json())["error"] == "BodyTooLarge"

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(5):
                yield b"y" * 400

        async with http.post(f"{proxy.url}/big-svc/x", data=chunks()) as resp:  # chunked, no length
            assert resp.status == 413
        async with http.post(f"{proxy.url}/big-svc/x", data=b"x" * 1000) as resp:
            assert resp.status == 200
        assert up.paths.count("/x") == 1  # the refused bodies never reached it (health probes may)
    finally:
        await proxy.stop()
        await plane_client.deregister(sid)


async def test_retries_go_to_another_instance_and_breakers_open(
    plane: PlaneProcess,
    plane_client: ControlPlaneClient,
    upstreams: StartUpstream,
    http: aiohttp.ClientSession,
) -> None:
    good = await upstreams("good")
    bad = await upstreams("bad", status(503))
    sids = [
        (await plane_client.register("flaky-svc", "127.0.0.1", up.port))["service_id"] for up in (good, bad)
    ]
    proxy = await sidecar(
        plane, strategy=LoadBalancerStrategy.ROUND_ROBIN, breaker=BreakerPolicy(failure_threshold=2)
    )
    try:
        for _ in range(10):
            async with http.get(f"{proxy.url}/flaky-svc/x") as resp:
                assert resp.status == 200
                assert await resp.text() == "good"
        assert bad.hits <= 2  # tripped after two failures, then skipped
        assert proxy.client.parts.breakers.states().get(sids[1]) == "open"
    finally:
        await proxy.stop()
        for sid in sids:
            await plane_client.deregister(sid)


async def test_deadline_from_the_caller_is_504(
    plane: PlaneProcess,
    plane_client: ControlPlaneClient,
    upstreams: StartUpstream,
    http: aiohttp.ClientSession,
) -> None:
    up = await upstreams("slow", hang(10))
    sid = (await plane_client.register("slow-svc", "127.0.0.1", up.port))["service_id"]
    proxy = await sidecar(plane)
    try:
        async with http.get(f"{proxy.url}/slow-svc/x", headers={"X-Meshkit-Deadline-Ms": "200"}) as resp:
            assert resp.status == 504
            assert (await resp.json())["error"] == "DeadlineExceeded"
    finally:
        await proxy.stop()
        await plane_client.deregister(sid)


async def test_tracing_continues_the_callers_trace(
    plane: PlaneProcess,
    plane_client: ControlPlaneClient,
    upstreams: StartUpstream,
    http: aiohttp.ClientSession,
) -> None:
    seen: list[str] = []

    async def record(request: web.Request) -> web.StreamResponse:
        seen.append(request.headers.get("traceparent", ""))
        return web.Response(text="traced")

    up = await upstreams("traced", record)
    sid = (await plane_client.register("traced-svc", "127.0.0.1", up.port))["service_id"]
    exporter = InMemorySpanExporter()
    proxy = await sidecar(plane, tracer=Tracer("sidecar", processors=[SimpleSpanProcessor(exporter)]))
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    try:
        parent = f"00-{trace_id}-00f067aa0ba902b7-01"
        async with http.get(f"{proxy.url}/traced-svc/x", headers={"traceparent": parent}) as resp:
            assert await resp.text() == "traced"
        spans = exporter.get_finished_spans()
        assert {f"{s.context.trace_id:032x}" for s in spans} == {trace_id}
        assert len(spans) == 2  # the call and its one attempt
        assert seen and seen[0].split("-")[1] == trace_id
        assert seen[0].split("-")[2] != "00f067aa0ba902b7"  # the instance's parent is the sidecar's span
    finally:
        await proxy.stop()
        await plane_client.deregister(sid)


async def test_keeps_serving_from_cache_when_the_plane_goes_away(
    tmp_path: object, upstreams: StartUpstream, http: aiohttp.ClientSession
) -> None:
    from pathlib import Path

    own = start_plane(Path(str(tmp_path)) / "data")
    up = await upstreams("steady")
    async with ControlPlaneClient(own.url, own.token) as client:
        await client.register("steady-svc", "127.0.0.1", up.port)
    proxy = await sidecar(own)
    try:
        async with http.get(f"{proxy.url}/steady-svc/x") as resp:
            assert resp.status == 200
        own.stop()
        await asyncio.sleep(0.2)
        for _ in range(3):
            async with http.get(f"{proxy.url}/steady-svc/x") as resp:
                assert resp.status == 200
                assert await resp.text() == "steady"
    finally:
        own.stop()
        await proxy.stop()
