"""`meshkit serve` as a real process: upstreams on loopback, a real redis-server, restarts."""

from __future__ import annotations

import asyncio
import shutil
import stat
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.plane.serving import Served, serve
from tests.plane.test_legacy import start_redis

V2 = "/api/v1/mesh/v2"
TOKEN = "e2e-admin-token-0123456789abcdef"


async def _json(
    session: aiohttp.ClientSession, method: str, url: str, token: str | None, **kw: Any
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with session.request(method, url, headers=headers, **kw) as resp:
        return resp.status, await resp.json(content_type=None)


async def _start(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> Served:
    return await asyncio.to_thread(serve, data_dir, *args, env=env)


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
async def test_serve_with_generated_token_redis_and_a_restart(tmp_path: Path, upstreams) -> None:
    up = await upstreams("hello")
    redis = await asyncio.to_thread(start_redis)
    data = tmp_path / "data"
    served = await _start(data, "--redis-url", redis.url)
    try:
        token_file = data / "admin.token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        banner = served.output()
        assert str(token_file) in banner and token not in banner
        for what in ("/api/v1/mesh/v2", "/docs", "/dashboard", "/metrics"):
            assert what in banner
        async with aiohttp.ClientSession() as s:
            base = served.url + V2
            code, _ = await _json(
                s,
                "POST",
                base + "/register",
                None,
                json={"service_name": "web", "address": "127.0.0.1", "port": up.port},
            )
            assert code == 401
            body = {"service_name": "web", "address": "127.0.0.1", "port": up.port}
            code, reg = await _json(s, "POST", base + "/register", token, json=body)
            assert code == 200 and reg["status"] == "registered"
            code, result = await _json(
                s, "POST", base + "/call", token, json={"service_name": "web", "path": "/hi"}
            )
            assert code == 200 and result["body"] == "hello" and up.paths == ["/hi"]
            await _json(s, "POST", base + "/configure/load-balancer?strategy=random", token)

            # the queue, v2 and legacy v1, on the real Redis
            code, queued = await _json(
                s, "POST", base + "/enqueue", token, json={"topic": "jobs", "task": {"n": 1}}
            )
            assert code == 200 and queued["message"] == "Task enqueued through service mesh"
            async with s.post(served.url + "/api/v1/mesh/enqueue", json={"topic": "jobs", "task": {"n": 2}},
                              headers={"Authorization": f"Bearer {token}"}) as resp:  # fmt: skip
                assert resp.status == 200 and resp.headers["Deprecation"]
            client = redis.client()
            entries = client.xrange("stream:tasks:jobs")
            assert [e[1]["json"] for e in entries] == ['{"n":1}', '{"n":2}'] and entries[0][0] == queued["id"]
            client.xadd("stream:results:jobs", {"json": '{"answer":42}'})
            code, results = await _json(s, "GET", base + "/results?topic=jobs", token)
            assert code == 200 and results[0]["data"] == {"answer": 42}
            code, results = await _json(s, "GET", served.url + "/api/v1/mesh/results?topic=jobs", token)
            assert code == 200 and results[0]["data"] == {"answer": 42}
            redis.stop()
            code, body = await _json(s, "POST", base + "/enqueue", token, json={"topic": "jobs", "task": {}})
            assert code == 503 and "Redis" in body["detail"]
        assert served.stop() in (0, -15)  # uvicorn re-raises SIGTERM after a graceful shutdown
        output = served.output()
        assert "Application shutdown complete" in output
        assert token not in output and "Traceback" not in output

        again = await _start(data)
        try:
            assert data.joinpath("admin.token").read_text().strip() == token  # the same token
            async with aiohttp.ClientSession() as s:
                code, found = await _json(s, "GET", again.url + V2 + "/discover/web", token)
                assert code == 200 and found["total"] == 1  # registrations survive a restart
                code, config = await _json(s, "GET", again.url + V2 + "/config", token)
                assert config["load_balancer"]["strategy"] == "random"  # and settings too
                code, result = await _json(
                    s, "POST", again.url + V2 + "/call", token, json={"service_name": "web"}
                )
                assert code == 200 and result["body"] == "hello"
        finally:
            again.stop()
    finally:
        if redis.proc.poll() is None:
            redis.stop()


async def test_env_admin_token_and_public_read(tmp_path: Path) -> None:
    served = await _start(tmp_path / "data", "--public-read", env={"MESHKIT_ADMIN_TOKEN": TOKEN})
    try:
        assert "MESHKIT_ADMIN_TOKEN" in served.output() and TOKEN not in served.output()
        assert not (tmp_path / "data" / "admin.token").exists()
        async with aiohttp.ClientSession() as s:
            code, topo = await _json(s, "GET", served.url + V2 + "/topology", None)
            assert code == 200 and topo["total_instances"] == 0
            code, _ = await _json(s, "POST", served.url + V2 + "/configure/retry", None)
            assert code == 401
            code, body = await _json(s, "POST", served.url + V2 + "/configure/retry", TOKEN)
            assert code == 200 and body["status"] == "configured"
            code, body = await _json(
                s, "POST", served.url + V2 + "/enqueue", TOKEN, json={"topic": "t", "task": {}}
            )
            assert code == 503  # no Redis configured
    finally:
        assert served.stop() in (0, -15)


async def test_bad_arguments_exit_with_a_message(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "meshkit.plane.serve", "--port", "99999", "--data-dir", str(tmp_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    assert proc.returncode == 2 and b"port:" in out
