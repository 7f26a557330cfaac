"""A Kong Admin API double per test, and a started KongAdmin client for it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from meshkit.plane.kong import KongAdmin
from tests.doubles.kong_double import KongDouble


@pytest.fixture
async def kong() -> AsyncIterator[KongDouble]:
    double = KongDouble()
    await double.start()
    yield double
    await double.stop()


@pytest.fixture
async def admin(kong: KongDouble) -> AsyncIterator[KongAdmin]:
    client = KongAdmin(kong.url, timeout=2.0, page_size=2)  # small pages: pagination is always exercised
    await client.start()
    yield client
    await client.close()
