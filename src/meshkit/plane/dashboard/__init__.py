"""The mesh dashboard: a page at /dashboard (topology, metrics, alerts, traces) and its API."""

from meshkit.plane.dashboard.monitor import MeshMonitor
from meshkit.plane.dashboard.router import dashboard_router

__all__ = ["MeshMonitor", "dashboard_router"]
