"""Process commands: `serve` (the control plane), `proxy` (the sidecar), `kong sync`, `alerts`.

The control plane, Kong sync and the alert rules live in `meshkit.plane`; they are imported
when their command runs, so the other commands start fast and a missing piece is one
clear message rather than an ImportError at start-up.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any

import typer

from meshkit.cli.common import JsonOpt, console, emit_json, fail, run_async, settings
from meshkit.errors import RegistryUnavailable
from meshkit.remote import DEFAULT_PORT, default_data_dir

kong_app = typer.Typer(help="Keep Kong's upstreams, targets, services and routes in step with the registry.")


def optional_module(name: str, feature: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        fail(f"{feature} is not available in this installation ({name}: {exc})")


def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = DEFAULT_PORT,
    data_dir: Annotated[
        Path | None, typer.Option(help="State directory (default: MESHKIT_DATA_DIR or ~/.meshkit).")
    ] = None,
    registry: Annotated[
        str, typer.Option(help="embedded, etcd://host:port or consul://host:port")
    ] = "embedded",
    redis_url: Annotated[
        str | None, typer.Option(envvar="MESHKIT_REDIS_URL", help="Redis for the legacy v1 queue.")
    ] = None,
    public_read: Annotated[bool, typer.Option(help="Serve reads without a token.")] = False,
    demo: Annotated[bool, typer.Option(help="Also run the demo services and traffic.")] = False,
    trace_sample_ratio: Annotated[
        float | None,
        typer.Option(
            envvar="MESHKIT_TRACE_SAMPLE_RATIO",
            help="Share of new traces that /call keeps, 0 to 1 (a caller's decision is followed).",
        ),
    ] = None,
) -> None:
    """Run the control plane (REST API, registry, health checks, traces, dashboard)."""
    serve_module = optional_module("meshkit.plane.serve", "the control plane (meshkit.plane.serve)")
    directory = data_dir or settings(ctx).data_dir or default_data_dir()
    try:
        serve_module.run_serve(
            host=host, port=port, data_dir=directory.expanduser(), registry=registry,
            redis_url=redis_url, public_read=public_read, demo=demo,
            trace_sample_ratio=1.0 if trace_sample_ratio is None else trace_sample_ratio,
        )  # fmt: skip
    except (ValueError, OSError, RegistryUnavailable) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        pass


def proxy(
    ctx: typer.Context,
    listen: Annotated[
        str, typer.Option(help="host:port for callers: http://HOST:PORT/<service>/<path>.")
    ] = "127.0.0.1:15001",
    control_plane: Annotated[
        str | None, typer.Option(help="The control plane's URL (default: --url).")
    ] = None,
    strategy: Annotated[str, typer.Option(help="Load-balancing strategy.")] = "p2c_ewma",
    timeout: Annotated[float, typer.Option(help="Default seconds per call, retries included.")] = 30.0,
    trace: Annotated[
        bool, typer.Option(help="Export call spans to the control plane's trace collector.")
    ] = False,
    engine: Annotated[
        str | None,
        typer.Option(help="HTTP engine: h1 (httptools, leaner) or aiohttp (default: the faster)."),
    ] = None,
) -> None:
    """Run the sidecar proxy, so a service in any language can call through the mesh."""
    from meshkit.proxy import run_proxy

    target = settings(ctx).target()
    url = control_plane or target.url
    options: dict[str, Any] = {"strategy": strategy, "timeout": timeout}
    if engine is not None:
        options["engine"] = engine
    if trace:
        from meshkit.observe.export import otlp_exporter
        from meshkit.observe.tracing import Tracer

        headers = {"Authorization": f"Bearer {target.token}"} if target.token else {}
        options["tracer"] = Tracer(
            "meshkit-proxy", processors=[otlp_exporter(url.rstrip("/") + "/v1/traces", headers)]
        )
    console.print(
        f"meshkit proxy on http://{listen}/<service>/<path>, discovering through {url}", highlight=False
    )
    try:
        run_proxy(listen, url, target.token, **options)
    except (ValueError, OSError, RegistryUnavailable) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        pass


@kong_app.command("sync")
def kong_sync(
    ctx: typer.Context,
    admin_url: Annotated[
        str, typer.Option(envvar="KONG_ADMIN_URL", help="Kong's Admin API.")
    ] = "http://127.0.0.1:8001",
    admin_token: Annotated[
        str | None, typer.Option(envvar="KONG_ADMIN_TOKEN", help="Kong-Admin-Token.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the changes without applying them.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Reconcile Kong with the registry once (--dry-run prints the plan only)."""
    kong = optional_module("meshkit.plane.kong", "Kong sync (meshkit.plane.kong)")
    from meshkit.registry.remote import RemoteRegistry

    target = settings(ctx).target()

    async def go() -> Any:
        async with target.client() as plane, kong.KongAdmin(admin_url, token=admin_token) as admin:
            return await kong.KongSync(RemoteRegistry(plane), admin).sync(dry_run=dry_run)

    try:
        changes = run_async(go)
    except kong.KongError as exc:
        fail(f"kong: {exc}")
    except Exception as exc:  # ControlPlaneError and friends: one line, never a traceback
        fail(str(exc))
    if json_out:
        emit_json([getattr(c, "__dict__", None) or repr(c) for c in changes])
        return
    console.print(kong.format_diff(changes) or "Kong is in sync", highlight=False, markup=False)
    failed = [c for c in changes if getattr(c, "error", None)]
    if failed:
        fail(f"{len(failed)} of {len(changes)} changes failed")


def alerts(
    prometheus_rules: Annotated[
        bool, typer.Option("--prometheus-rules", help="Print a Prometheus rules file.")
    ] = False,
    for_: Annotated[str, typer.Option("--for", help="How long a condition holds before firing.")] = "1m",
    window: Annotated[str, typer.Option(help="rate() window for error rate and latency.")] = "5m",
    json_out: JsonOpt = False,
) -> None:
    """Show the alert thresholds, or print them as Prometheus alerting rules."""
    rules_module = optional_module("meshkit.plane.alerts.rules", "alerts (meshkit.plane.alerts)")
    rules = rules_module.AlertRules()
    if prometheus_rules:
        prometheus = optional_module("meshkit.plane.alerts.prometheus", "alerts (meshkit.plane.alerts)")
        try:
            typer.echo(prometheus.prometheus_rules(rules, for_=for_, window=window), nl=False)
        except ValueError as exc:
            fail(str(exc))
        return
    if json_out:
        emit_json(rules.as_dict())
        return
    for key, value in rules.as_dict().items():
        console.print(f"{key}: {value}", highlight=False)
