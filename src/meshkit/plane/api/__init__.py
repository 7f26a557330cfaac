"""The control plane's REST API: a FastAPI shell over `ControlPlane` (`create_app(plane)`)."""

from meshkit.plane.api.app import V2_PREFIX, create_app

__all__ = ["V2_PREFIX", "create_app"]
