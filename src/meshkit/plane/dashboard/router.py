"""The dashboard's HTTP surface: the page at /dashboard, its static files, alerts and history.

A shell over `MeshMonitor` (STYLE.md: no policy lives here). The page itself holds no data and
is public; it reads everything through the REST API with `Authorization: Bearer <token>`
from a login form (the token lives in sessionStorage, never in a URL, so it cannot reach an
access log or a Referer). Live updates are polling: EventSource cannot send that header,
and a poll every few seconds is cheap next to the calls it reports. The alerts and history
endpoints are read endpoints: open with --public-read, else any valid token. Static files
are served from a fixed list taken at start-up, so no request path can name another file;
the page runs under a Content-Security-Policy that refuses inline script.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse

from meshkit.plane.alerts import prometheus_rules
from meshkit.plane.auth import Unauthenticated
from meshkit.plane.dashboard.monitor import MeshMonitor

V2_PREFIX = "/api/v1/mesh/v2"
STATIC_DIR = Path(__file__).parent / "static"
MEDIA_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".txt": "text/plain"}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def static_files(root: Path = STATIC_DIR) -> dict[str, Path]:
    """Every file under `root` by its relative path: the only names the static route serves."""
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


def _positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.1 <= value <= 3600:
        raise ValueError(f"{name}: must be a number of seconds from 0.1 to 3600, got {value!r}")
    return float(value)


def dashboard_router(
    plane: Any,
    *,
    monitor: MeshMonitor | None = None,
    refresh_interval: float = 5.0,
    prefix: str = V2_PREFIX,
) -> APIRouter:
    """The dashboard's routes over a `ControlPlane` (anything with topology(), health(), metrics
    and authorize_read(authorization)). Its lifespan starts and stops the monitor's sampling."""
    refresh = _positive("refresh_interval", refresh_interval)
    watch = monitor if monitor is not None else MeshMonitor.for_plane(plane)
    files = static_files()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        watch.start()
        try:
            yield
        finally:
            await watch.stop()

    def reader(request: Request) -> None:
        try:
            plane.authorize_read(request.headers.get("authorization"))
        except Unauthenticated as exc:
            raise HTTPException(401, str(exc), headers={"WWW-Authenticate": "Bearer"}) from None

    read = [Depends(reader)]
    router = APIRouter(lifespan=lifespan)

    @router.get("/dashboard", include_in_schema=False)
    @router.get("/dashboard/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(files["index.html"], media_type="text/html", headers=SECURITY_HEADERS)

    @router.get("/dashboard/static/{name:path}", include_in_schema=False)
    async def static(name: str) -> FileResponse:
        path = files.get(name)
        if path is None:
            raise HTTPException(404, "no such dashboard file")
        media = MEDIA_TYPES.get(path.suffix, "application/octet-stream")
        return FileResponse(path, media_type=media, headers=SECURITY_HEADERS)

    @router.get("/dashboard/config", tags=["dashboard"])
    async def config() -> dict[str, Any]:
        """What the page needs before it logs in: where the API is and how often to poll."""
        return {
            "api": prefix,
            "refresh_ms": int(refresh * 1000),
            "history_interval": watch.history.interval,
            "public_read": bool(getattr(plane, "public_read", False)),
        }

    @router.get(f"{prefix}/alerts", tags=["dashboard"], dependencies=read)
    async def alerts() -> dict[str, Any]:
        """Firing alerts (critical first) with the time each began, recently resolved ones, and the rules."""
        firing = await watch.alerts()
        return {
            "alerts": [a.as_dict() for a in firing],
            "resolved": [r.as_dict() for r in watch.tracker.resolved],
            "rules": watch.rules.as_dict(),
        }

    @router.get(f"{prefix}/alerts/prometheus-rules", tags=["dashboard"], dependencies=read)
    async def alert_rules() -> PlainTextResponse:
        """The same thresholds as a Prometheus alerting-rules file."""
        return PlainTextResponse(prometheus_rules(watch.rules), media_type="application/yaml")

    @router.get(f"{prefix}/history", tags=["dashboard"], dependencies=read)
    async def history(
        service: Annotated[str | None, Query(max_length=64)] = None,
        since: Annotated[float | None, Query()] = None,
    ) -> JSONResponse:
        """Trend points (mesh-wide, or one service's), and each service's and the mesh's traffic
        over the last window (60 s by default)."""
        h = watch.history
        body = {
            "interval": h.interval,
            "max_samples": h.max_samples,
            "service": service,
            "points": h.series(service, since),
            "services": watch.service_stats(),
            "window": watch.mesh_stats(),
        }
        return JSONResponse(body)

    return router
