"""The dashboard in a real headless Chromium against a real control plane and real services.

Services are aiohttp servers on 127.0.0.1 that register through the REST API; traffic goes
through /call (and one traced caller exports its spans over OTLP). The page is read through
cytoscape's own API (window.meshkitCy) and the DOM; screenshots land in test-artifacts/.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.conftest import StartUpstream
from tests.dashboard.conftest import (
    ADMIN_TOKEN,
    StartPlane,
    click_node,
    edge_pairs,
    graph_ready,
    node_ids,
    screenshot,
)

PLANE_CALLER = "meshkit-plane"  # the service name of the plane's own client spans (/call)


def failing_except_health() -> Any:
    async def handle(request: web.Request) -> web.StreamResponse:
        if request.path == "/health":
            return web.Response(text="ok")
        return web.Response(status=500, text="broken")

    return handle


async def test_live_dashboard_topology_alerts_detail_and_waterfall(
    plane_process: StartPlane, upstreams: StartUpstream, browser: Any
) -> None:
    plane = await plane_process()
    await plane.fast_health_checks()
    web1 = await upstreams("web")
    api1, api2 = await upstreams("api-1"), await upstreams("api-2")
    db1 = await upstreams("db", failing_except_health())
    await plane.register("web", web1.port)
    api_ids = [await plane.register("api", api1.port), await plane.register("api", api2.port)]
    await plane.register("db", db1.port)
    await plane.call("api", "/items", count=6)
    await plane.call("db", "/rows", count=4)
    traced = await plane.export_call("web", "api", "GET /items")

    page = await browser.new_page(bypass_csp=True)  # Playwright's wait_for_function needs eval
    seen_urls: list[str] = []
    auth_headers: list[str | None] = []

    def on_request(request: Any) -> None:
        seen_urls.append(request.url)
        if "/api/v1/" in request.url:
            auth_headers.append(request.headers.get("authorization"))

    page.on("request", on_request)
    await page.goto(plane.base + "/dashboard")

    # Token login: a form, kept in sessionStorage, sent only as a header.
    await page.wait_for_selector("#login", state="visible")
    await page.fill("#token", "wrong-token-wrong-token")
    await page.click("#login-form button[type=submit]")
    await page.wait_for_function("document.getElementById('login-error').textContent.length > 0")
    await page.fill("#token", ADMIN_TOKEN)
    await page.click("#login-form button[type=submit]")
    await graph_ready(page)
    assert await page.evaluate("sessionStorage.getItem('meshkit.token')") == ADMIN_TOKEN
    assert not any(ADMIN_TOKEN in url for url in [*seen_urls, page.url])
    assert f"Bearer {ADMIN_TOKEN}" in auth_headers

    # Nodes and edges, read through cytoscape.
    await page.wait_for_function(
        "window.meshkitCy.edges().length >= 3 && window.meshkitCy.$id('db').length === 1"
    )
    assert {"web", "api", "db", PLANE_CALLER} <= await node_ids(page)
    assert {(PLANE_CALLER, "api"), (PLANE_CALLER, "db"), ("web", "api")} <= await edge_pairs(page)
    assert await page.evaluate("window.meshkitCy.$id('api').data('total')") == 2
    assert await page.evaluate("window.meshkitCy.$id('api').data('status')") == "healthy"
    db_edge_errors = await page.evaluate(
        f"window.meshkitCy.$id('edge:{PLANE_CALLER}->db').data('error_rate')"
    )
    assert db_edge_errors == 1.0
    await screenshot(page, "01-topology")

    # The error rate of db raises an alert once history has sampled the traffic.
    await plane.call("db", "/rows", count=3)
    await page.wait_for_selector("tr.alert-row[data-name=HighErrorRate][data-service=db]", timeout=10_000)

    # Kill one api instance: the node turns degraded within the refresh interval, an alert appears.
    await api2.stop()
    await page.wait_for_function(
        "window.meshkitCy.$id('api').data('status') === 'degraded' && window.meshkitCy.$id('api').hasClass('degraded')",
        timeout=5_000,
    )
    await page.wait_for_selector("tr.alert-row[data-name=ServiceDegraded][data-service=api]", timeout=5_000)
    assert await page.evaluate("window.meshkitCy.$id('api').data('healthy')") == 1
    await screenshot(page, "02-instance-killed")

    # Click the node: the detail opens with instances, their checks, history and recent traces.
    await click_node(page, "api")
    await page.wait_for_selector("#detail", state="visible")
    assert await page.text_content("#detail-name") == "api"
    rows = await page.eval_on_selector_all(
        "#detail-instances tbody tr", "rs => rs.map(r => r.dataset.instance)"
    )
    assert sorted(rows) == sorted(api_ids)
    await page.wait_for_selector(".instance-info .checks")
    states = await page.eval_on_selector_all(
        "#detail-instances tbody tr td:nth-child(3)", "ts => ts.map(t => t.textContent)"
    )
    assert sorted(states) == ["healthy", "unhealthy"]
    await page.wait_for_selector("#detail-traces tr.trace-row")
    p99_chart = "#detail-charts .chart[data-metric=p99_ms]"
    await page.wait_for_selector(f"{p99_chart} polyline, {p99_chart} circle")
    assert not (await page.text_content(f"{p99_chart} .title") or "").endswith(
        "\u2013"
    )  # an en dash: no value
    await screenshot(page, "03-service-detail")

    # Trace search and the waterfall of one trace.
    await page.fill("#trace-search input[name=service_name]", "web")
    await page.click("#trace-search button[type=submit]")
    await page.wait_for_selector(f"#trace-results tr.trace-row[data-trace='{traced}']")
    await page.click(f"#trace-results tr.trace-row[data-trace='{traced}']")
    await page.wait_for_selector("#waterfall .wf-bar")
    assert await page.text_content("#waterfall-id") == traced
    bars = await page.eval_on_selector_all(
        "#waterfall .wf-bar",
        "bs => bs.map(b => [b.getBoundingClientRect().left, b.getBoundingClientRect().width])",
    )
    labels = await page.eval_on_selector_all("#waterfall .wf-label", "ls => ls.map(l => l.textContent)")
    assert labels == ["web: GET /items", "api: GET /items"]  # the client span, then the server span in it
    (client_left, client_width), (server_left, server_width) = bars
    assert server_left > client_left and server_width < client_width  # drawn to one time scale
    await screenshot(page, "04-trace-waterfall")
    await page.close()


async def test_markup_in_metadata_service_and_span_names_is_shown_as_text(
    plane_process: StartPlane, upstreams: StartUpstream, browser: Any
) -> None:
    plane = await plane_process(public_read=True)
    up = await upstreams("shop")
    script_tag = "<script>window.__xss = 1</script>"
    img_tag = '<img src=x onerror="window.__xss = 2">'
    evil_service = '<b>caller</b><img src=y onerror="window.__xss = 3">'  # OTLP service names are free text
    evil_operation = '<svg onload="window.__xss = 4"></svg>'
    await plane.register("shop", up.port, tags=["plain"], metadata={"note": img_tag, "script": script_tag})
    trace_id = await plane.export_call(evil_service, "shop", evil_operation)

    # With the page's CSP bypassed, only escaping stands between the markup and the DOM.
    page = await browser.new_page(bypass_csp=True)
    await page.goto(plane.base + "/dashboard")
    await graph_ready(page)
    assert await page.is_hidden("#login")  # --public-read: no login needed
    await page.wait_for_function(
        "window.meshkitCy.$id('shop').length === 1 && window.meshkitCy.edges().length > 0"
    )
    assert evil_service in await node_ids(page)
    await click_node(page, "shop")
    await page.wait_for_selector(".instance-info .metadata")
    metadata = await page.text_content(".instance-info .metadata") or ""
    assert img_tag in metadata and script_tag in metadata

    await click_node(page, evil_service)
    await page.wait_for_function(f"document.getElementById('detail-name').textContent === {evil_service!r}")

    await page.fill("#trace-search input[name=service_name]", "shop")
    await page.click("#trace-search button[type=submit]")
    await page.click(f"#trace-results tr.trace-row[data-trace='{trace_id}']")
    await page.wait_for_selector("#waterfall .wf-label")
    labels = await page.eval_on_selector_all("#waterfall .wf-label", "ls => ls.map(l => l.textContent)")
    assert labels == [f"{evil_service}: {evil_operation}", f"shop: {evil_operation}"]

    assert await page.evaluate("window.__xss") is None
    assert (
        await page.evaluate(
            "document.querySelectorAll('main img, main script, main b, main svg:not(.chart svg)').length"
        )
        == 0
    )
    await screenshot(page, "05-escaped-markup")
    await page.close()


async def test_page_without_a_token_shows_only_the_login_form(
    plane_process: StartPlane, browser: Any
) -> None:
    plane = await plane_process()
    page = await browser.new_page()
    response = await page.goto(plane.base + "/dashboard")
    assert response is not None
    csp = response.headers.get("content-security-policy", "")
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    await page.wait_for_selector("#login", state="visible")
    assert await page.is_hidden("#app")
    assert await page.evaluate("window.meshkitGraphReady") is None
    await page.close()
