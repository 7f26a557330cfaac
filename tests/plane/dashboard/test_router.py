"""The dashboard router: page and static files, auth on its read endpoints, alerts and history,
mounted on the real control plane app through `create_app(plane, extra_routers=...)`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from meshkit.observe.metrics import MeshMetrics
from meshkit.plane.api import create_app
from meshkit.plane.auth import Unauthenticated
from meshkit.plane.dashboard import MeshMonitor, dashboard_router
from meshkit.plane.dashboard.router import STATIC_DIR, static_files
from meshkit.plane.plane import ControlPlane

TOKEN = "router-test-admin-token-0123456789"
V2 = "/api/v1/mesh/v2"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class StubPlane:
    """The plane's public reads, scripted: one service whose only instance is down."""

    def __init__(self, public_read: bool = False) -> None:
        self.public_read = public_read
        self.metrics = MeshMetrics()
        self.metrics.set_known_services(["db"])

    def authorize_read(self, authorization: str | None) -> None:
        if not self.public_read and authorization != f"Bearer {TOKEN}":
            raise Unauthenticated("a valid bearer token is required")

    async def topology(self) -> dict[str, Any]:
        instance = {"id": "db-1", "address": "127.0.0.1:1", "state": "unhealthy", "circuit_breaker": "open"}
        return {"services": {"db": {"instances": [instance], "total": 1, "healthy": 0}}}

    async def health(self) -> dict[str, Any]:
        return {"status": "unhealthy", "health_score": 0.0, "total_instances": 1}


def client_for(plane: StubPlane, **options: Any) -> TestClient:
    app = FastAPI()
    app.include_router(dashboard_router(plane, **options))
    return TestClient(app)


def test_page_and_static_files_carry_a_strict_content_security_policy() -> None:
    with client_for(StubPlane()) as client:
        page = client.get("/dashboard")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        assert "script-src 'self';" in csp and "frame-ancestors 'none'" in csp
        assert page.headers["x-content-type-options"] == "nosniff"
        assert 'src="/dashboard/static/vendor/cytoscape.min.js"' in page.text
        assert "http://" not in page.text and "https://" not in page.text  # nothing from a CDN
        js = client.get("/dashboard/static/vendor/cytoscape.min.js")
        assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
        assert "Cytoscape Consortium" in client.get("/dashboard/static/vendor/cytoscape.LICENSE").text


@pytest.mark.parametrize(
    "path",
    ["/dashboard/static/../router.py", "/dashboard/static/..%2Frouter.py", "/dashboard/static/nope.js"],
)
def test_static_route_serves_only_the_listed_files(path: str) -> None:
    with client_for(StubPlane()) as client:
        assert client.get(path).status_code == 404


def test_static_listing_is_the_shipped_files() -> None:
    names = set(static_files())
    assert {"index.html", "app.js", "charts.js", "style.css", "vendor/cytoscape.min.js"} <= names
    assert all((STATIC_DIR / n).is_file() for n in names)


def test_read_endpoints_need_a_token_unless_public_read() -> None:
    paths = [f"{V2}/alerts", f"{V2}/history", f"{V2}/alerts/prometheus-rules"]
    with client_for(StubPlane()) as client:
        for path in paths:
            refused = client.get(path)
            assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
            assert client.get(path, headers=AUTH).status_code == 200
        config = client.get("/dashboard/config").json()
        assert config == {"api": V2, "refresh_ms": 5000, "history_interval": 10.0, "public_read": False}
    with client_for(StubPlane(public_read=True)) as client:
        assert all(client.get(path).status_code == 200 for path in paths)


def test_alerts_list_severity_and_time_and_the_rules() -> None:
    with client_for(StubPlane()) as client:
        body = client.get(f"{V2}/alerts", headers=AUTH).json()
    found = {(a["name"], a["severity"], a["service"]) for a in body["alerts"]}
    assert found == {
        ("MeshHealthCritical", "critical", None),
        ("ServiceDown", "critical", "db"),
        ("CircuitBreakerOpen", "warning", "db"),
    }
    assert body["alerts"][0]["severity"] == "critical"
    assert all(a["since"] > 1e9 for a in body["alerts"]) and body["rules"]["error_rate"] == 0.05


def test_history_is_sampled_from_the_lifespan_and_feeds_traffic_alerts() -> None:
    plane = StubPlane()
    monitor = MeshMonitor.for_plane(plane, interval=0.05)
    with client_for(plane, monitor=monitor, refresh_interval=1.0) as client:
        assert client.get("/dashboard/config").json()["refresh_ms"] == 1000
        deadline = time.monotonic() + 10
        while not client.get(f"{V2}/history", headers=AUTH).json()["points"] and time.monotonic() < deadline:
            time.sleep(0.05)
        for _ in range(20):
            plane.metrics.observe_request("db", 500, 2.0, "server_error")
        while time.monotonic() < deadline:
            body = client.get(f"{V2}/history", headers=AUTH, params={"service": "db"}).json()
            if "db" in body["services"]:
                break
            time.sleep(0.05)
        assert body["services"]["db"]["error_rate"] == 1.0 and body["services"]["db"]["p99_ms"] > 1000
        assert body["window"]["success_rate"] == 0.0
        assert any(p["request_rate"] > 0 for p in body["points"])
        names = {a["name"] for a in client.get(f"{V2}/alerts", headers=AUTH).json()["alerts"]}
        assert {"HighErrorRate", "HighLatency"} <= names


def test_bad_refresh_interval_raises_naming_the_field() -> None:
    with pytest.raises(ValueError, match=r"^refresh_interval: must be"):
        dashboard_router(StubPlane(), refresh_interval=0)


def test_mounted_on_the_control_plane_app(tmp_path: Path) -> None:
    plane = ControlPlane(data_dir=tmp_path, admin_token=TOKEN, health_checks=False)
    monitor = MeshMonitor.for_plane(plane, interval=0.05)
    app = create_app(plane, extra_routers=[dashboard_router(plane, monitor=monitor)])
    with TestClient(app) as client:
        assert client.get("/dashboard").status_code == 200
        assert client.get(f"{V2}/alerts").status_code == 401
        reply = client.post(
            f"{V2}/register", headers=AUTH, json={"service_name": "api", "address": "127.0.0.1", "port": 9}
        )
        assert reply.status_code == 200
        body = client.get(f"{V2}/alerts", headers=AUTH).json()
        assert body["alerts"] == []  # one healthy instance (no checks): nothing fires
        deadline = time.monotonic() + 10  # the router's lifespan, merged into the app's, samples
        while not client.get(f"{V2}/history", headers=AUTH).json()["points"]:
            assert time.monotonic() < deadline, "the history never sampled"
            time.sleep(0.05)
        assert client.get(f"{V2}/history", headers=AUTH).json()["points"][-1]["health_score"] == 1.0
