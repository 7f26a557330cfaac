"""The legacy v1 task queue on Redis streams: deprecated, kept working for the seed's clients.

The seed's first "mesh" was a queue: `POST /api/v1/mesh/enqueue {topic, task}` appended the
task, as one `json` field, to the stream `stream:tasks:{topic}` (capped `MAXLEN ~ 10000`,
consumer group `default`); workers wrote answers to `stream:results:{topic}` and failures to
`stream:dead:{topic}`, and announced themselves at `mesh:agent:{id}` with a 60 s TTL. Those
keys and the response shapes are kept so existing workers and callers keep working. Every v1
response carries `Deprecation` (RFC 9745) and a `Link` to its v2 successor. With Redis down
the answer is 503 and a clear message; an enqueue is one MULTI/EXEC, so nothing is half-written.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
import redis.asyncio as aioredis
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from redis.exceptions import RedisError, ResponseError
from starlette.responses import Response

from meshkit.plane.auth import Forbidden, Unauthenticated

TOPIC_PATTERN = r"^[a-z0-9:_-]+$"
TOPIC_RE = re.compile(TOPIC_PATTERN)
MAX_COUNT = 100  # the seed's bound on GET /results?count
DEFAULT_MAX_TASK_BYTES = 64 * 1024
STREAM_MAXLEN = 10000
AGENT_TTL_SECONDS = 60
GROUP = "default"
MAX_AGENTS = 10000
DEPRECATED_SINCE = "@1755302400"  # 2025-08-16, the release that introduced v2 (RFC 9745 date)
V1_PREFIX = "/api/v1/mesh"
V2_PREFIX = "/api/v1/mesh/v2"
SUCCESSORS = {"/enqueue": "/enqueue", "/results": "/results", "/agents": "/topology", "/health": "/health"}


def task_stream(topic: str) -> str:
    return f"stream:tasks:{topic}"


def result_stream(topic: str) -> str:
    return f"stream:results:{topic}"


def dead_stream(topic: str) -> str:
    return f"stream:dead:{topic}"


def agent_key(agent_id: str) -> str:
    return f"mesh:agent:{agent_id}"


class QueueUnavailable(Exception):
    """Redis could not be reached or refused the command; the API answers 503."""


def validate_topic(topic: object) -> str:
    if not isinstance(topic, str) or not 1 <= len(topic) <= 64 or not TOPIC_RE.match(topic):
        raise ValueError(f"topic: must match {TOPIC_PATTERN} and be 1-64 characters, got {topic!r}")
    return topic


def validate_count(count: object) -> int:
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
        raise ValueError(f"count: must be an integer from 1 to {MAX_COUNT}, got {count!r}")
    return count


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc))


def _decode(fields: dict[str, str]) -> Any:
    try:
        return orjson.loads(fields.get("json", "{}"))
    except orjson.JSONDecodeError:
        return fields  # the seed's fallback: hand back the raw fields


class LegacyQueue:
    """The v1 queue's operations over one Redis connection pool."""

    def __init__(
        self,
        redis_url: str = "redis://127.0.0.1:6379/0",
        *,
        max_task_bytes: int = DEFAULT_MAX_TASK_BYTES,
        maxlen: int = STREAM_MAXLEN,
        timeout: float = 2.0,
    ) -> None:
        for name, value in (("max_task_bytes", max_task_bytes), ("maxlen", maxlen)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: must be an integer >= 1, got {value!r}")
        self.url = _without_password(redis_url)
        self.max_task_bytes = max_task_bytes
        self.maxlen = maxlen
        self._redis = aioredis.from_url(
            redis_url, decode_responses=True, socket_connect_timeout=timeout, socket_timeout=timeout
        )

    async def _run(self, what: str, op: Callable[[], Any]) -> Any:
        try:
            return await op()
        except (RedisError, OSError) as exc:
            raise QueueUnavailable(
                f"legacy queue unavailable: {what} failed on Redis at {self.url}: {type(exc).__name__}: {exc}"
            ) from exc

    def _encode_task(self, task: object) -> str:
        if not isinstance(task, dict):
            raise ValueError(f"task: must be a JSON object, got {type(task).__name__}")
        try:
            payload = orjson.dumps(task)
        except TypeError as exc:
            raise ValueError(f"task: must be JSON-serialisable: {exc}") from None
        if len(payload) > self.max_task_bytes:
            raise ValueError(f"task: must be at most {self.max_task_bytes} bytes as JSON, got {len(payload)}")
        return payload.decode("utf-8")

    async def enqueue(self, topic: str, task: dict[str, Any]) -> str:
        """Append `task` to the topic's stream (creating group `default` if needed); return its id."""
        stream, payload = task_stream(validate_topic(topic)), self._encode_task(task)

        async def op() -> str:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.xgroup_create(stream, GROUP, id="0", mkstream=True)
                pipe.xadd(stream, {"json": payload}, maxlen=self.maxlen, approximate=True)
                created, msg_id = await pipe.execute(raise_on_error=False)
            if isinstance(created, ResponseError) and "BUSYGROUP" not in str(created):
                raise created
            if isinstance(msg_id, Exception):
                raise msg_id
            return str(msg_id)

        result: str = await self._run("enqueue", op)
        return result

    async def results(self, topic: str, count: int = 10) -> list[dict[str, Any]]:
        """The latest `count` results of a topic, newest first: `[{id, data}]`."""
        stream, n = result_stream(validate_topic(topic)), validate_count(count)
        raw = await self._run("results", lambda: self._redis.xrevrange(stream, count=n))
        return [{"id": msg_id, "data": _decode(fields)} for msg_id, fields in raw]

    async def publish_result(self, topic: str, data: dict[str, Any]) -> str:
        """What a worker does with an answer (kept so v1 results have a writer in tests and tools)."""
        stream, payload = result_stream(validate_topic(topic)), self._encode_task(data)
        op = lambda: self._redis.xadd(stream, {"json": payload}, maxlen=self.maxlen, approximate=True)  # noqa: E731
        return str(await self._run("publish_result", op))

    async def dead_letter(self, topic: str, msg_id: str, payload: dict[str, Any]) -> str:
        stream, body = dead_stream(validate_topic(topic)), orjson.dumps({"id": msg_id, "payload": payload})
        op = lambda: self._redis.xadd(stream, {"json": body.decode()}, maxlen=self.maxlen, approximate=True)  # noqa: E731
        return str(await self._run("dead_letter", op))

    async def register_agent(
        self, agent_id: str, agent_type: str, meta: dict[str, Any] | None = None, ttl: int = AGENT_TTL_SECONDS
    ) -> None:
        """Announce an agent for `ttl` seconds (agents call this again as their heartbeat)."""
        record = orjson.dumps({"agent_id": agent_id, "agent_type": agent_type, "meta": meta or {}}).decode()
        await self._run("register_agent", lambda: self._redis.set(agent_key(agent_id), record, ex=ttl))

    async def agents(self) -> list[dict[str, Any]]:
        """Agents alive now (their keys have not expired), read with SCAN, never KEYS."""

        async def op() -> list[dict[str, Any]]:
            keys = []
            async for key in self._redis.scan_iter(match=agent_key("*"), count=500):
                keys.append(key)
                if len(keys) >= MAX_AGENTS:
                    break
            values = await self._redis.mget(keys) if keys else []
            found = []
            for value in values:
                if not value:
                    continue  # expired between SCAN and MGET
                try:
                    found.append(orjson.loads(value))
                except orjson.JSONDecodeError:
                    continue
            return found

        result: list[dict[str, Any]] = await self._run("agents", op)
        return result

    async def health(self) -> dict[str, Any]:
        pong = await self._run("ping", lambda: self._redis.ping())
        agents = await self.agents()
        return {"status": "ok" if pong else "degraded", "redis": bool(pong), "agents_count": len(agents)}

    async def aclose(self) -> None:
        await self._redis.aclose()


class EnqueueBody(BaseModel):
    topic: str = Field(..., min_length=1, max_length=64, pattern=TOPIC_PATTERN)
    task: dict[str, Any]


def _deprecated_route(v2_prefix: str) -> type[APIRoute]:
    class DeprecatedRoute(APIRoute):
        """Adds Deprecation and Link to every answer, errors included, and maps queue errors."""

        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()
            tail = self.path.rsplit("/", 1)[-1]
            link = f'<{v2_prefix}{SUCCESSORS.get("/" + tail, "")}>; rel="successor-version"'

            async def run(request: Request) -> Response:
                try:
                    response = await handler(request)
                except RequestValidationError as exc:
                    response = JSONResponse({"detail": jsonable_encoder(exc.errors())}, status_code=422)
                except ValueError as exc:
                    response = JSONResponse({"detail": str(exc)}, status_code=422)
                except QueueUnavailable as exc:
                    response = JSONResponse({"detail": str(exc)}, status_code=503)
                except Unauthenticated as exc:
                    response = JSONResponse({"detail": str(exc)}, 401, {"WWW-Authenticate": "Bearer"})
                except Forbidden as exc:
                    response = JSONResponse({"detail": str(exc)}, status_code=403)
                except HTTPException as exc:
                    response = JSONResponse({"detail": exc.detail}, exc.status_code, exc.headers)
                response.headers["Deprecation"] = DEPRECATED_SINCE
                response.headers["Link"] = link
                return response

            return run

    return DeprecatedRoute


def legacy_router(
    queue_provider: Callable[[], LegacyQueue],
    *,
    write_dependencies: Sequence[Any] = (),
    prefix: str = V1_PREFIX,
    v2_prefix: str = V2_PREFIX,
) -> APIRouter:
    """The v1 endpoints as a FastAPI router; `write_dependencies` guard POST /enqueue (auth)."""
    router = APIRouter(
        prefix=prefix, route_class=_deprecated_route(v2_prefix), tags=["legacy v1"], deprecated=True
    )

    @router.post("/enqueue", dependencies=list(write_dependencies))
    async def enqueue(body: EnqueueBody) -> dict[str, str]:
        return {"id": await queue_provider().enqueue(body.topic, body.task)}

    @router.get("/results")
    async def results(
        topic: str = Query(..., min_length=1, max_length=64, pattern=TOPIC_PATTERN),
        count: int = Query(10, ge=1, le=MAX_COUNT),
    ) -> list[dict[str, Any]]:
        return await queue_provider().results(topic, count)

    @router.get("/agents")
    async def agents() -> dict[str, Any]:
        found = await queue_provider().agents()
        return {"count": len(found), "agents": found}

    @router.get("/health")
    async def health() -> dict[str, Any]:
        try:
            return await queue_provider().health()
        except QueueUnavailable as exc:
            raise QueueUnavailable(f"mesh unhealthy: {exc}") from exc

    return router
