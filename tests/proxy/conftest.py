"""Every sidecar test runs on both engines: aiohttp's server and the httptools one (`--engine h1`)."""

from __future__ import annotations

import pytest

import meshkit.proxy.sidecar as sidecar_module
from meshkit.proxy.sidecar import ENGINES


@pytest.fixture(params=ENGINES, autouse=True)
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The engine a `SidecarProxy` built without `engine=` uses in this test."""
    name = str(request.param)
    monkeypatch.setattr(sidecar_module, "DEFAULT_ENGINE", name)
    return name
