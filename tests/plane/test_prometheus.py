"""A real Prometheus scrapes `meshkit serve` (with a bearer token) and answers queries about it;
the exposition passes `promtool check metrics`."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests

from tests.plane.serving import serve
from tests.support.servers import free_port

pytestmark = pytest.mark.skipif(
    shutil.which("prometheus") is None or shutil.which("promtool") is None,
    reason="prometheus is not installed",
)
TOKEN = "prometheus-admin-token-0123456789"
V2 = "/api/v1/mesh/v2"


def start_prometheus(tmp: Path, target_port: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    config = tmp / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n"
        "  - job_name: meshkit\n"
        "    metrics_path: /metrics\n"
        f"    authorization:\n      credentials: {TOKEN}\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n"
    )
    args = [
        "prometheus",
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    with open(tmp / "prometheus.log", "wb") as log:
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log)
    return proc, f"http://127.0.0.1:{port}"


def query(base: str, promql: str, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Poll Prometheus until `promql` returns a non-empty vector."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            answer = requests.get(f"{base}/api/v1/query", params={"query": promql}, timeout=2).json()
            if answer.get("status") == "success" and answer["data"]["result"]:
                return list(answer["data"]["result"])
        except (requests.RequestException, ValueError):
            pass
        time.sleep(0.25)
    raise AssertionError(f"Prometheus never answered {promql!r}")


async def test_prometheus_scrapes_and_queries_the_mesh(tmp_path: Path, upstreams) -> None:
    up = await upstreams("m")
    served = await asyncio.to_thread(serve, tmp_path / "data", env={"MESHKIT_ADMIN_TOKEN": TOKEN})
    prom, prom_url = start_prometheus(tmp_path, served.port)
    try:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with aiohttp.ClientSession(headers=headers) as s:
            body = {"service_name": "shop", "address": "127.0.0.1", "port": up.port}
            async with s.post(served.url + V2 + "/register", json=body) as resp:
                assert resp.status == 200
            for _ in range(3):
                async with s.post(served.url + V2 + "/call", json={"service_name": "shop"}) as resp:
                    assert resp.status == 200
            async with s.get(served.url + "/metrics") as resp:
                exposition = await resp.read()
                assert resp.headers["Content-Type"].startswith("text/plain")
        check = await asyncio.to_thread(
            subprocess.run,
            ["promtool", "check", "metrics"],
            input=exposition,
            capture_output=True,
            timeout=30,
        )
        assert check.returncode == 0, check.stdout + check.stderr

        up_series = await asyncio.to_thread(query, prom_url, 'up{job="meshkit"} == 1')
        assert up_series[0]["metric"]["instance"] == f"127.0.0.1:{served.port}"
        instances = await asyncio.to_thread(query, prom_url, "mesh_registered_instances")
        assert instances[0]["value"][1] == "1"
        calls = await asyncio.to_thread(
            query, prom_url, 'mesh_requests_total{service="shop",status_class="2xx"}'
        )
        assert calls[0]["value"][1] == "3"
        picks = await asyncio.to_thread(
            query, prom_url, 'sum(mesh_load_balancer_requests_total{service="shop"})'
        )
        assert picks[0]["value"][1] == "3"
    finally:
        prom.terminate()
        prom.wait(timeout=15)
        served.stop()
