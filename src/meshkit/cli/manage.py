"""Configuration and token commands: `meshkit config ...` and `meshkit token ...`."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from meshkit.cli.common import JsonOpt, console, emit_json, fail, with_plane

config_app = typer.Typer(
    help="Show or change the mesh's balancing, breaker, retry and health-check settings."
)
token_app = typer.Typer(help="Create, list and revoke service tokens (needs the admin token).")


def _show_settings(reply: Any, title: str) -> None:
    table = Table(title=title, show_header=False)
    sections = reply.items() if isinstance(reply, dict) else []
    for section, values in sections:
        if isinstance(values, dict):
            for key, value in values.items():
                table.add_row(f"{section}.{key}", str(value))
        else:
            table.add_row(section, str(values))
    console.print(table)


def _done(reply: Any, json_out: bool, what: str) -> None:
    if json_out:
        emit_json(reply)
    else:
        _show_settings(reply, f"{what} updated")


@config_app.command("show")
def show(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """The current settings."""
    reply = with_plane(ctx, lambda plane: plane.config())
    if json_out:
        emit_json(reply)
    else:
        _show_settings(reply, "mesh configuration")


@config_app.command("lb")
def load_balancer(
    ctx: typer.Context,
    strategy: Annotated[
        str, typer.Argument(help="round_robin, least_connections, weighted, random, ip_hash, p2c_ewma")
    ],
    json_out: JsonOpt = False,
) -> None:
    """Choose the load-balancing strategy."""
    _done(with_plane(ctx, lambda plane: plane.configure_load_balancer(strategy)), json_out, "load balancer")


@config_app.command("breaker")
def breaker(
    ctx: typer.Context,
    failure_threshold: Annotated[int | None, typer.Option(help="Failures that open a breaker.")] = None,
    recovery_timeout: Annotated[float | None, typer.Option(help="Seconds open before a probe.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Tune the circuit breakers."""
    if failure_threshold is None and recovery_timeout is None:
        fail("config breaker: give --failure-threshold and/or --recovery-timeout")
    reply = with_plane(
        ctx, lambda plane: plane.configure_circuit_breaker(failure_threshold, recovery_timeout)
    )
    _done(reply, json_out, "circuit breaker")


@config_app.command("retry")
def retry(
    ctx: typer.Context,
    max_attempts: Annotated[int | None, typer.Option(help="Tries per call, the first included.")] = None,
    base_delay: Annotated[float | None, typer.Option(help="Backoff base, seconds.")] = None,
    max_delay: Annotated[float | None, typer.Option(help="Backoff cap, seconds.")] = None,
    retry_all_5xx: Annotated[bool | None, typer.Option("--retry-all-5xx/--no-retry-all-5xx")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Tune retries."""
    if all(v is None for v in (max_attempts, base_delay, max_delay, retry_all_5xx)):
        fail("config retry: give at least one of --max-attempts, --base-delay, --max-delay, --retry-all-5xx")
    reply = with_plane(
        ctx, lambda plane: plane.configure_retry(max_attempts, base_delay, max_delay, retry_all_5xx)
    )
    _done(reply, json_out, "retry")


@config_app.command("health-check")
def health_check(
    ctx: typer.Context,
    interval: Annotated[float | None, typer.Option(help="Seconds between probes.")] = None,
    timeout: Annotated[float | None, typer.Option(help="Seconds a probe may take.")] = None,
    unhealthy_threshold: Annotated[int | None, typer.Option(help="Failures to mark unhealthy.")] = None,
    healthy_threshold: Annotated[int | None, typer.Option(help="Successes to mark healthy.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Tune the default health check."""
    values = (interval, timeout, unhealthy_threshold, healthy_threshold)
    if all(v is None for v in values):
        fail(
            "config health-check: give at least one of --interval, --timeout, --unhealthy-threshold, --healthy-threshold"
        )
    reply = with_plane(ctx, lambda plane: plane.configure_health_check(*values))
    _done(reply, json_out, "health check")


@token_app.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A name for the token, e.g. orders-prod.")],
    service: Annotated[
        list[str], typer.Option("--service", "-s", help="A service it may manage (repeatable).")
    ],
    json_out: JsonOpt = False,
) -> None:
    """Create a service token; it is shown once."""
    reply = with_plane(ctx, lambda plane: plane.create_token(name, service))
    if json_out:
        emit_json(reply)
        return
    console.print(
        f"token [bold]{reply['name']}[/] for {', '.join(reply['services'])} (shown once):", highlight=False
    )
    typer.echo(reply["token"])


@token_app.command("list")
def list_tokens(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """List service tokens (names and services, never the tokens)."""
    reply = with_plane(ctx, lambda plane: plane.list_tokens())
    if json_out:
        emit_json(reply)
        return
    rows = reply.get("tokens", reply) if isinstance(reply, dict) else reply
    table = Table(title="service tokens")
    table.add_column("name")
    table.add_column("services")
    for entry in rows:
        table.add_row(entry["name"], ", ".join(entry.get("services", [])))
    console.print(table)


@token_app.command("revoke")
def revoke(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The token's name.")],
    json_out: JsonOpt = False,
) -> None:
    """Revoke a service token."""
    reply = with_plane(ctx, lambda plane: plane.revoke_token(name))
    if json_out:
        emit_json(reply)
    else:
        console.print(f"revoked [bold]{name}[/]", highlight=False)
