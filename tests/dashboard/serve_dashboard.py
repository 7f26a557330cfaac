"""Run a real control plane with the dashboard mounted, for the browser tests and the benchmark.

`python -m tests.dashboard.serve_dashboard --port N --data-dir D [--public-read]
[--history-interval S] [--refresh S]` builds what `meshkit serve` builds (ControlPlane,
create_app) and adds `dashboard_router(plane)` through `extra_routers`, with a short history
interval so trends and traffic alerts appear within a test's time.
"""

from __future__ import annotations

import argparse
import os

import uvicorn

from meshkit.plane.api import create_app
from meshkit.plane.dashboard import MeshMonitor, dashboard_router
from meshkit.plane.plane import ControlPlane


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--public-read", action="store_true")
    parser.add_argument("--history-interval", type=float, default=1.0)
    parser.add_argument("--refresh", type=float, default=1.0)
    args = parser.parse_args()
    plane = ControlPlane(
        data_dir=args.data_dir,
        public_read=args.public_read,
        admin_token=os.environ.get("MESHKIT_ADMIN_TOKEN") or None,
    )
    monitor = MeshMonitor.for_plane(plane, interval=args.history_interval)
    router = dashboard_router(plane, monitor=monitor, refresh_interval=args.refresh)
    app = create_app(plane, extra_routers=[router])
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
