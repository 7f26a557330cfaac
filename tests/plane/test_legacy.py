"""Legacy v1 queue against a real redis-server, through a real uvicorn server on 127.0.0.1."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest
import redis
from fastapi import Depends, FastAPI, Header

from meshkit.plane.auth import TokenStore
from meshkit.plane.legacy import (
    DEPRECATED_SINCE,
    GROUP,
    LegacyQueue,
    QueueUnavailable,
    legacy_router,
    validate_count,
    validate_topic,
)
from tests.support.asgi import uvicorn_server
from tests.support.servers import free_port

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")

PASSWORD = "hunter2-very-secret"


@dataclass
class RedisServer:
    port: int
    proc: subprocess.Popen[bytes]
    password: str | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, password=self.password, decode_responses=True)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def start_redis(password: str | None = None) -> RedisServer:
    port = free_port()
    args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    args += ["--daemonize", "no"] + (["--requirepass", password] if password else [])
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = RedisServer(port, proc, password)
    deadline = time.monotonic() + 10
    while True:
        try:
            server.client().ping()
            return server
        except redis.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                server.stop()
                raise
            time.sleep(0.02)


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = start_redis()
    yield server
    server.stop()


@pytest.fixture
def rds(redis_server: RedisServer) -> redis.Redis:
    client = redis_server.client()
    client.flushall()
    return client


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[str]:
    """Run `app` under a real uvicorn server on a free port for the duration of the block."""
    async with uvicorn_server(app) as port:
        yield f"http://127.0.0.1:{port}"


@asynccontextmanager
async def v1(redis_url: str, **kwargs: Any) -> AsyncIterator[tuple[aiohttp.ClientSession, str, LegacyQueue]]:
    queue = LegacyQueue(redis_url, **kwargs)
    app = FastAPI()
    app.include_router(legacy_router(lambda: queue))
    async with serve(app) as url, aiohttp.ClientSession(base_url=url) as http:
        yield http, url, queue
    await queue.aclose()


def assert_deprecated(resp: aiohttp.ClientResponse, successor: str) -> None:
    assert resp.headers["Deprecation"] == DEPRECATED_SINCE
    assert resp.headers["Link"] == f'</api/v1/mesh/v2{successor}>; rel="successor-version"'


async def test_enqueue_writes_one_json_field_to_the_task_stream(
    redis_server: RedisServer, rds: redis.Redis
) -> None:
    async with v1(redis_server.url) as (http, _, _):
        task = {"kind": "resize", "n": 3, "nested": {"ok": True}}
        async with http.post("/api/v1/mesh/enqueue", json={"topic": "img:resize", "task": task}) as resp:
            assert resp.status == 200
            body = await resp.json()
            assert_deprecated(resp, "/enqueue")
    assert set(body) == {"id"}
    entries = rds.xrange("stream:tasks:img:resize")
    assert [(msg_id, orjson.loads(fields["json"])) for msg_id, fields in entries] == [(body["id"], task)]
    assert list(entries[0][1]) == ["json"]
    groups = rds.xinfo_groups("stream:tasks:img:resize")
    assert [g["name"] for g in groups] == [GROUP]
    # a worker in the default group receives it
    got = rds.xreadgroup(GROUP, "worker-1", {"stream:tasks:img:resize": ">"}, count=10)
    assert got[0][1][0][0] == body["id"]


async def test_task_stream_is_capped_approximately(redis_server: RedisServer, rds: redis.Redis) -> None:
    queue = LegacyQueue(redis_server.url, maxlen=10)
    try:
        for i in range(500):
            await queue.enqueue("cap", {"i": i})
    finally:
        await queue.aclose()
    length = rds.xlen("stream:tasks:cap")
    assert 10 <= length < 500  # MAXLEN ~ trims whole nodes, never below the cap
    last = orjson.loads(rds.xrevrange("stream:tasks:cap", count=1)[0][1]["json"])
    assert last == {"i": 499}


async def test_results_are_newest_first_with_id_and_data(redis_server: RedisServer, rds: redis.Redis) -> None:
    async with v1(redis_server.url) as (http, _, queue):
        ids = [await queue.publish_result("jobs", {"n": i}) for i in range(15)]
        rds.xadd("stream:results:jobs", {"json": "not json{"})
        async with http.get("/api/v1/mesh/results", params={"topic": "jobs", "count": "3"}) as resp:
            assert resp.status == 200
            assert_deprecated(resp, "/results")
            three = await resp.json()
        async with http.get("/api/v1/mesh/results", params={"topic": "jobs"}) as resp:
            default = await resp.json()
        async with http.get("/api/v1/mesh/results", params={"topic": "empty"}) as resp:
            assert await resp.json() == []
    assert three[0]["data"] == {"json": "not json{"}  # undecodable entries come back raw, as in the seed
    assert three[1:] == [{"id": ids[14], "data": {"n": 14}}, {"id": ids[13], "data": {"n": 13}}]
    assert len(default) == 10


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("post", "/api/v1/mesh/enqueue", {"json": {"topic": "Bad Topic", "task": {}}}),
        ("post", "/api/v1/mesh/enqueue", {"json": {"topic": "t" * 65, "task": {}}}),
        ("post", "/api/v1/mesh/enqueue", {"json": {"topic": "", "task": {}}}),
        ("post", "/api/v1/mesh/enqueue", {"json": {"topic": "ok", "task": [1, 2]}}),
        ("post", "/api/v1/mesh/enqueue", {"json": {"topic": "ok"}}),
        (
            "post",
            "/api/v1/mesh/enqueue",
            {"data": b"{not json", "headers": {"Content-Type": "application/json"}},
        ),
        ("get", "/api/v1/mesh/results", {"params": {"topic": "ok", "count": "0"}}),
        ("get", "/api/v1/mesh/results", {"params": {"topic": "ok", "count": "101"}}),
        ("get", "/api/v1/mesh/results", {"params": {"topic": "../x"}}),
        ("get", "/api/v1/mesh/results", {"params": {}}),
    ],
)
async def test_bad_input_is_422_with_deprecation_headers_and_writes_nothing(
    redis_server: RedisServer, rds: redis.Redis, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    async with v1(redis_server.url) as (http, _, _), http.request(method, path, **kwargs) as resp:
        assert resp.status == 422
        assert "detail" in await resp.json()
        assert resp.headers["Deprecation"] == DEPRECATED_SINCE
    assert rds.keys("*") == []


async def test_oversized_task_is_refused_before_redis(redis_server: RedisServer, rds: redis.Redis) -> None:
    async with v1(redis_server.url, max_task_bytes=100) as (http, _, _):
        body = {"topic": "big", "task": {"blob": "x" * 200}}
        async with http.post("/api/v1/mesh/enqueue", json=body) as resp:
            assert resp.status == 422
            assert (await resp.json())["detail"].startswith("task: must be at most 100 bytes")
    assert rds.keys("*") == []


async def test_agents_and_health(redis_server: RedisServer, rds: redis.Redis) -> None:
    async with v1(redis_server.url) as (http, _, queue):
        await queue.register_agent("a1", "resizer", {"gpu": False})
        await queue.register_agent("a2", "ocr")
        rds.set("mesh:agent:broken", "{nope")
        async with http.get("/api/v1/mesh/agents") as resp:
            assert_deprecated(resp, "/topology")
            agents = await resp.json()
        async with http.get("/api/v1/mesh/health") as resp:
            assert resp.status == 200
            assert_deprecated(resp, "/health")
            health = await resp.json()
    assert agents["count"] == 2
    assert sorted(a["agent_id"] for a in agents["agents"]) == ["a1", "a2"]
    assert {"agent_id": "a1", "agent_type": "resizer", "meta": {"gpu": False}} in agents["agents"]
    assert 0 < rds.ttl("mesh:agent:a1") <= 60
    assert health == {"status": "ok", "redis": True, "agents_count": 2}


async def test_redis_down_is_503_with_a_clear_message_and_no_secret() -> None:
    server = start_redis(password=PASSWORD)
    try:
        async with v1(server.url, timeout=1.0) as (http, _, queue):
            await queue.enqueue("up", {"ok": 1})  # works while Redis is up
            server.stop()
            for method, path, kwargs in (
                ("post", "/api/v1/mesh/enqueue", {"json": {"topic": "t", "task": {"a": 1}}}),
                ("get", "/api/v1/mesh/results", {"params": {"topic": "t"}}),
                ("get", "/api/v1/mesh/agents", {}),
                ("get", "/api/v1/mesh/health", {}),
            ):
                async with http.request(method, path, **kwargs) as resp:
                    assert resp.status == 503, path
                    detail = (await resp.json())["detail"]
                    assert resp.headers["Deprecation"] == DEPRECATED_SINCE
                assert "legacy queue unavailable" in detail and f"127.0.0.1:{server.port}" in detail
                assert PASSWORD not in detail
                if path.endswith("/health"):
                    assert detail.startswith("mesh unhealthy:")
    finally:
        if server.proc.poll() is None:
            server.stop()


async def test_enqueue_is_all_or_nothing_when_redis_rejects_it(
    redis_server: RedisServer, rds: redis.Redis
) -> None:
    rds.set("stream:tasks:clash", "a string, not a stream")
    queue = LegacyQueue(redis_server.url)
    try:
        with pytest.raises(QueueUnavailable, match="WRONGTYPE"):
            await queue.enqueue("clash", {"a": 1})
    finally:
        await queue.aclose()
    assert rds.type("stream:tasks:clash") == "string"
    assert rds.keys("*") == ["stream:tasks:clash"]


async def test_enqueue_can_require_a_token_while_reads_stay_open(
    redis_server: RedisServer, rds: redis.Redis
) -> None:
    store = TokenStore(None)
    admin = store.ensure_admin_token()

    def require_token(authorization: str | None = Header(None)) -> None:
        store.require(authorization)

    queue = LegacyQueue(redis_server.url)
    app = FastAPI()
    app.include_router(legacy_router(lambda: queue, write_dependencies=[Depends(require_token)]))
    body = {"topic": "t", "task": {"a": 1}}
    async with serve(app) as url, aiohttp.ClientSession(base_url=url) as http:
        async with http.post("/api/v1/mesh/enqueue", json=body) as resp:
            assert resp.status == 401 and resp.headers["WWW-Authenticate"] == "Bearer"
            assert resp.headers["Deprecation"] == DEPRECATED_SINCE
        async with http.post(
            "/api/v1/mesh/enqueue", json=body, headers={"Authorization": "Bearer wrong"}
        ) as resp:
            assert resp.status == 401
        assert rds.keys("*") == []
        async with http.post(
            "/api/v1/mesh/enqueue", json=body, headers={"Authorization": f"Bearer {admin}"}
        ) as resp:
            assert resp.status == 200
        async with http.get("/api/v1/mesh/results", params={"topic": "t"}) as resp:
            assert resp.status == 200
    await queue.aclose()
    assert rds.xlen("stream:tasks:t") == 1


def test_openapi_marks_v1_deprecated() -> None:
    app = FastAPI()
    app.include_router(legacy_router(lambda: LegacyQueue()))
    paths = app.openapi()["paths"]
    assert set(paths) == {f"/api/v1/mesh/{p}" for p in ("enqueue", "results", "agents", "health")}
    assert all(op.get("deprecated") for ops in paths.values() for op in ops.values())


@pytest.mark.parametrize(
    ("value", "field"), [("A", "topic"), ("a b", "topic"), ("x" * 65, "topic"), (3, "topic")]
)
def test_validate_topic(value: object, field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}: must match"):
        validate_topic(value)
    assert validate_topic("a:b_c-1") == "a:b_c-1"


@pytest.mark.parametrize("value", [0, 101, -1, True, "5", 2.0])
def test_validate_count(value: object) -> None:
    with pytest.raises(ValueError, match=r"^count: must be an integer from 1 to 100"):
        validate_count(value)
