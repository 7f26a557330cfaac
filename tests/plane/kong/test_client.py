"""KongAdmin against the Kong double: start-up checks, pagination, upserts, errors, the token."""

from __future__ import annotations

import pytest

from meshkit.plane.kong import KongAdmin, KongError, KongUnavailable
from tests.conftest import StartUpstream
from tests.doubles.kong_double import KongDouble
from tests.support.servers import free_port


async def test_unreachable_admin_api_names_the_address() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(KongUnavailable, match=rf"kong at {url}: GET / failed"):
        await KongAdmin(url, timeout=1.0).start()


async def test_something_else_or_an_old_kong_is_refused(kong: KongDouble, upstreams: StartUpstream) -> None:
    up = await upstreams("not-kong")
    with pytest.raises(KongUnavailable, match="did not answer as Kong's Admin API does"):
        await KongAdmin(f"http://127.0.0.1:{up.port}").start()
    kong.version = "1.5.0"
    with pytest.raises(KongUnavailable, match=r"version '1.5.0' is too old; meshkit needs >= 2.0"):
        await KongAdmin(kong.url).start()


def test_bad_settings_name_the_field() -> None:
    with pytest.raises(ValueError, match=r"^kong_admin_url: "):
        KongAdmin("127.0.0.1:8001")
    with pytest.raises(ValueError, match=r"^page_size: "):
        KongAdmin("http://k:8001", page_size=0)
    with pytest.raises(ValueError, match=r"^timeout: "):
        KongAdmin("http://k:8001", timeout=-1)


async def test_list_follows_next_across_pages(admin: KongAdmin, kong: KongDouble) -> None:
    for i in range(5):
        await admin.put(f"/services/s{i}", {"host": "h", "tags": ["meshkit"] if i % 2 else []})
    assert sorted(s["name"] for s in await admin.list("/services")) == ["s0", "s1", "s2", "s3", "s4"]
    assert sum(1 for m, p in kong.requests if m == "GET" and p.startswith("/services?")) == 3  # 2 + 2 + 1
    assert sorted(s["name"] for s in await admin.list("/services", tags="meshkit")) == ["s1", "s3"]


async def test_put_is_an_upsert_by_name(admin: KongAdmin, kong: KongDouble) -> None:
    first = await admin.put("/services/users", {"host": "users-upstream", "port": 80})
    again = await admin.put("/services/users", {"host": "users-upstream", "port": 8080})
    assert first["id"] == again["id"] and again["port"] == 8080 and again["retries"] == 5  # defaults filled
    assert len(kong.entities["services"]) == 1
    got = await admin.get("/services/users")
    assert got is not None and got["port"] == 8080
    assert await admin.get("/services/nobody") is None


async def test_kong_refusals_carry_status_and_message(admin: KongAdmin, kong: KongDouble) -> None:
    await admin.post("/services", {"name": "users", "host": "h"})
    with pytest.raises(KongError, match="answered 409: UNIQUE violation") as info:
        await admin.post("/services", {"name": "users", "host": "h"})
    assert info.value.status == 409 and not isinstance(info.value, KongUnavailable)
    with pytest.raises(KongError, match="schema violation"):
        await admin.put("/services/nohost", {})
    kong.fail_next(1, 503)
    with pytest.raises(KongUnavailable, match="answered 503"):
        await admin.list("/services")
    assert await admin.delete("/services/users") is True


async def test_admin_token_header() -> None:
    double = KongDouble(token="rbac")
    await double.start()
    try:
        with pytest.raises(KongError, match="401"):
            await KongAdmin(double.url).start()
        async with KongAdmin(double.url, token="rbac") as admin:
            assert admin.version == "3.4.2"
    finally:
        await double.stop()
