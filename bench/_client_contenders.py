"""The clients bench_client.py compares, each making `GET /` to the local nginx.

raw aiohttp is the baseline; meshkit runs its default stack (over AiohttpTransport, and
over H1Transport as "meshkit x1 (h1 transport)"; or, for diagnosis, the stack with some
layers removed, or its transport alone); blacksmith runs with static
discovery and its circuit breaker, over its default transport or a pooled one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import aiohttp

from _nginx import LocalNginx
from _rounds import Contender

SERVICE = "bench"


def raw_aiohttp(nginx: LocalNginx, concurrency: int) -> Contender:
    url = nginx.urls[0]
    state: dict[str, aiohttp.ClientSession] = {}

    async def start() -> None:
        state["session"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=max(100, concurrency)))
        async with state["session"].get(url) as r:
            body = await r.read()
        if body != nginx.body:
            raise RuntimeError(f"raw aiohttp: unexpected body of {len(body)} bytes")

    async def call() -> bool:
        async with state["session"].get(url) as r:
            await r.read()
            return r.status == 200

    async def close() -> None:
        await state["session"].close()

    return Contender("raw aiohttp", "pooled ClientSession, baseline", start, call, close)


def meshkit_client(
    nginx: LocalNginx, instances: int, without: Sequence[str] = (), transport: str = "aiohttp"
) -> Contender:
    from meshkit import Request
    from meshkit.client import MeshClient
    from meshkit.transport.h1 import H1Transport

    addresses = nginx.addresses[:instances]
    client = MeshClient.static({SERVICE: addresses}, transport=H1Transport() if transport == "h1" else None)
    for role in without:  # ablation: the same client with some layers taken out
        client.stack.remove(role)
    ports = {port for _, port in addresses}

    async def start() -> None:
        seen: set[int] = set()
        for _ in range(8 * instances):
            resp = await client.call(Request("GET", "/", service=SERVICE))
            if resp.status != 200 or resp.body != nginx.body or resp.instance is None:
                raise RuntimeError(f"meshkit: unexpected response {resp.status}, {len(resp.body)} bytes")
            seen.add(resp.instance.port)
        if not seen <= ports:
            raise RuntimeError(f"meshkit: answered from ports {seen}, expected some of {ports}")

    async def call() -> bool:
        resp = await client.call(Request("GET", "/", service=SERVICE))
        return resp.status == 200

    name = f"meshkit x{instances}" + "".join(f" -{role}" for role in without)
    note = f"{'default stack' if not without else ', '.join(client.stack.roles)}, {instances} instance(s)"
    if transport == "h1":
        name, note = f"{name} (h1 transport)", f"{note}, H1Transport (httptools) instead of aiohttp"
    return Contender(name, note, start, call, client.aclose)


def meshkit_transport(nginx: LocalNginx) -> Contender:
    """meshkit's AiohttpTransport alone, the instance set by hand: the floor under the stack."""
    from meshkit import AiohttpTransport, Request
    from meshkit.types import ServiceInstance

    transport = AiohttpTransport()
    instance = ServiceInstance("bench-0", SERVICE, "127.0.0.1", nginx.ports[0])

    async def call() -> bool:
        request = Request("GET", "/", service=SERVICE)
        request.instance = instance
        return (await transport(request)).status == 200

    async def start() -> None:
        if not await call():
            raise RuntimeError("meshkit transport: unexpected status")

    return Contender("meshkit transport", "AiohttpTransport only, no deadline", start, call, transport.aclose)


BLACKSMITH_MIDDLEWARES = "AsyncCircuitBreakerMiddleware(threshold=5, ttl=30) (no retries in blacksmith)"


def blacksmith_client(nginx: LocalNginx, pooled: bool) -> Contender:
    import blacksmith
    import httpx
    from blacksmith.domain.model.http import HTTPRawResponse
    from blacksmith.service._async.adapters.httpx import AsyncHttpxTransport, build_headers
    from blacksmith.service.http_body_serializer import serialize_response

    class Root(blacksmith.Request):
        """GET / takes no parameters."""

    blacksmith.register(SERVICE, "root", SERVICE, None, path="/", contract={"GET": (Root, None)})

    class PooledHttpxTransport(AsyncHttpxTransport):
        """blacksmith's httpx transport over one shared httpx client instead of one per request."""

        def __init__(self) -> None:
            super().__init__(verify_certificate=False)
            self.client = httpx.AsyncClient(limits=httpx.Limits(max_connections=None))

        async def __call__(self, req: Any, client_name: Any, path: Any, timeout: Any) -> Any:  # noqa: ASYNC109
            r = await self.client.request(
                req.method,
                req.url,
                params=req.querystring,
                headers=build_headers(req),
                content=req.body,
                timeout=httpx.Timeout(timeout.read, connect=timeout.connect),
            )
            resp = serialize_response(cast(HTTPRawResponse, r))
            if not r.is_success:
                raise blacksmith.HTTPError(f"{client_name} {req.method} {path} {r.status_code}", req, resp)
            return resp

    transport = PooledHttpxTransport() if pooled else None
    sd = blacksmith.AsyncStaticDiscovery({(SERVICE, None): f"http://127.0.0.1:{nginx.ports[0]}"})
    factory: blacksmith.AsyncClientFactory[Any] = blacksmith.AsyncClientFactory(sd, transport=transport)
    factory.add_middleware(blacksmith.AsyncCircuitBreakerMiddleware(threshold=5, ttl=30))

    async def start() -> None:
        await factory.initialize()
        api = await factory(SERVICE)
        box = await api.root.get({})
        resp = box.raw_result.unwrap()
        if resp.status_code != 200 or int(resp.headers.get("content-length", -1)) != len(nginx.body):
            raise RuntimeError(f"blacksmith: unexpected response {resp.status_code}")

    async def call() -> bool:
        api = await factory(SERVICE)  # discovery per call, as meshkit resolves per call
        box = await api.root.get({})
        return bool(box.is_ok())

    async def close() -> None:
        if isinstance(transport, PooledHttpxTransport):
            await transport.client.aclose()

    if pooled:
        return Contender("blacksmith pooled", "breaker; one shared httpx client", start, call, close)
    return Contender("blacksmith", "breaker; default transport (httpx client per call)", start, call, close)
