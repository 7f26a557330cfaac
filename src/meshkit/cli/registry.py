"""Registry and traffic commands: register, deregister, discover, call, topology, health, wait."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn
from rich.table import Table

from meshkit.cli.common import (
    JsonOpt,
    console,
    emit_json,
    fail,
    parse_pairs,
    styled,
    with_plane,
)
from meshkit.remote import ControlPlaneClient, ControlPlaneError, ControlPlaneUnreachable

REGISTER_FIELDS = {
    "service_name", "address", "port", "tags", "metadata", "service_id",
    "weight", "zone", "version", "check", "ttl",
}  # fmt: skip


def load_registrations(path: Path) -> list[dict[str, Any]]:
    """A JSON file holding one registration object or a list of them."""
    try:
        data = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"file: {path} is not valid JSON: {exc}") from None
    items = data if isinstance(data, list) else [data]
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not {"service_name", "address", "port"} <= item.keys():
            raise ValueError(f"file: entry {i} must be an object with service_name, address and port")
        unknown = set(item) - REGISTER_FIELDS
        if unknown:
            raise ValueError(
                f"file: entry {i} has unknown fields {sorted(unknown)}; allowed: {sorted(REGISTER_FIELDS)}"
            )
    return items


def register(
    ctx: typer.Context,
    service: Annotated[str | None, typer.Argument(help="Service name (omit with --file).")] = None,
    address: Annotated[str | None, typer.Argument(help="Host or IP the instance listens on.")] = None,
    port: Annotated[int | None, typer.Argument(help="Port the instance listens on.")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", "-t", help="A tag (repeatable).")] = None,
    meta: Annotated[
        list[str] | None, typer.Option("--meta", "-m", help="KEY=VALUE metadata (repeatable).")
    ] = None,
    weight: Annotated[int | None, typer.Option(help="Balancing weight (0 = never picked).")] = None,
    check_path: Annotated[str | None, typer.Option(help="HTTP health check path, e.g. /health.")] = None,
    ttl: Annotated[float | None, typer.Option(help="Seconds without a heartbeat before it expires.")] = None,
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="Register every entry of a JSON file.")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Register a service instance (or every instance listed in a JSON file)."""
    if file is not None:
        try:
            items = load_registrations(file)
        except (ValueError, OSError) as exc:
            fail(str(exc))
    elif service and address and port:
        item: dict[str, Any] = {"service_name": service, "address": address, "port": port}
        item.update(tags=tag or [], metadata=parse_pairs(meta, "=", "--meta"))
        optional = {
            "weight": weight,
            "ttl": ttl,
            "check": {"kind": "http", "path": check_path} if check_path else None,
        }
        item.update({k: v for k, v in optional.items() if v is not None})
        items = [item]
    else:
        fail("register needs SERVICE ADDRESS PORT, or --file FILE")

    async def go(plane: ControlPlaneClient) -> list[Any]:
        replies = []
        with Progress(TextColumn("registering"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                      console=console, transient=True, disable=len(items) < 2 or json_out) as progress:  # fmt: skip
            task = progress.add_task("register", total=len(items))
            for entry in items:
                body = dict(entry)
                replies.append(
                    await plane.register(
                        body.pop("service_name"), body.pop("address"), body.pop("port"), **body
                    )
                )
                progress.advance(task)
        return replies

    replies = with_plane(ctx, go)
    if json_out:
        emit_json(replies if file is not None else replies[0])
        return
    for reply in replies:
        console.print(f"registered [bold]{reply['service_id']}[/]", highlight=False)


def deregister(
    ctx: typer.Context,
    service_id: Annotated[str, typer.Argument(help="The instance id register printed.")],
    json_out: JsonOpt = False,
) -> None:
    """Remove a service instance from the registry."""
    reply = with_plane(ctx, lambda plane: plane.deregister(service_id))
    if json_out:
        emit_json(reply)
    else:
        console.print(f"deregistered [bold]{service_id}[/]", highlight=False)


def discover(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="Service name.")],
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Ask the registry, not the plane's cache.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """List a service's instances and their health."""
    reply = with_plane(ctx, lambda plane: plane.discover(service, use_cache=not no_cache))
    if json_out:
        emit_json(reply)
        return
    stale = f", [yellow]stale ({reply.get('age', 0):.0f}s old)[/]" if reply.get("stale") else ""
    table = Table(title=f"{service}: {reply['healthy']}/{reply['total']} healthy{stale}")
    for column in ("id", "address", "state", "tags", "metadata"):
        table.add_column(column, no_wrap=column in ("id", "address", "state"))  # ids stay whole
    for inst in reply["instances"]:
        meta = ", ".join(f"{k}={v}" for k, v in inst.get("metadata", {}).items())
        table.add_row(
            inst["id"], inst["address"], styled(inst["state"]), ", ".join(inst.get("tags", [])), meta
        )
    console.print(table)


def call(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="Service name.")],
    path: Annotated[str, typer.Argument(help="Path (and query) on the instance.")] = "/",
    method: Annotated[str, typer.Option("--method", "-X", help="HTTP method.")] = "GET",
    header: Annotated[
        list[str] | None, typer.Option("--header", "-H", help="NAME: VALUE (repeatable).")
    ] = None,
    data: Annotated[
        str | None, typer.Option("--data", "-d", help="Request body (JSON is sent as JSON).")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds for the whole call, retries included.")] = 30.0,
    retries: Annotated[
        int | None, typer.Option(help="Retries after the first try (default: the plane's).")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Call a service through the control plane's client stack (/call)."""
    body: Any = data
    if data is not None:
        try:
            body = orjson.loads(data)
        except orjson.JSONDecodeError:
            body = data
    headers = parse_pairs(header, ":", "--header")
    reply = with_plane(
        ctx,
        lambda plane: plane.call(
            service, method, path, headers=headers, body=body, timeout=timeout, retry_count=retries
        ),
    )
    if json_out:
        emit_json(reply)
        return
    console.print(
        f"[bold]{reply['status_code']}[/] from {reply['instance_id']} in {reply['duration'] * 1000:.1f} ms"
        f" (trace {reply['trace_id']})",
        highlight=False,
    )
    result = reply["body"]
    typer.echo(
        result if isinstance(result, str) else orjson.dumps(result, option=orjson.OPT_INDENT_2).decode()
    )


def topology(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Every service and instance, with health, connections and breaker states."""
    reply = with_plane(ctx, lambda plane: plane.topology())
    if json_out:
        emit_json(reply)
        return
    table = Table(title=f"{reply['healthy_instances']}/{reply['total_instances']} instances healthy")
    for column in ("service", "instance", "address", "state", "connections", "breaker"):
        table.add_column(column, no_wrap=column in ("instance", "address"))
    for name, entry in sorted(reply["services"].items()):
        for inst in entry["instances"]:
            breaker = inst.get("circuit_breaker", "closed")
            shown = breaker if breaker == "closed" else f"[red]{breaker}[/]"
            row = (
                name,
                inst["id"],
                inst["address"],
                styled(inst["state"]),
                str(inst.get("connections", 0)),
                shown,
            )
            table.add_row(*row)
    console.print(table)


def health(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """The mesh's health: status, score, instances and open breakers."""
    reply = with_plane(ctx, lambda plane: plane.health())
    if json_out:
        emit_json(reply)
        return
    table = Table(show_header=False, title=f"mesh is {styled(str(reply.get('status')))}")
    for key, value in reply.items():
        if key != "status" and not isinstance(value, dict | list):
            table.add_row(key, str(value))
    console.print(table)


def wait(
    ctx: typer.Context,
    service: Annotated[
        str | None, typer.Option(help="Also wait for this service's healthy instances.")
    ] = None,
    healthy: Annotated[int, typer.Option(help="How many healthy instances to wait for.")] = 1,
    timeout: Annotated[float, typer.Option(help="Seconds to wait before giving up.")] = 30.0,
    json_out: JsonOpt = False,
) -> None:
    """Wait until the control plane answers (and, with --service, until enough instances are healthy)."""

    async def go(plane: ControlPlaneClient) -> Any:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + timeout
        what = f"{healthy} healthy {service}" if service else "the control plane"
        with Progress(SpinnerColumn(), TextColumn(f"waiting for {what}... {{task.description}}"),
                      console=console, transient=True, disable=json_out) as progress:  # fmt: skip
            task = progress.add_task("")
            while True:
                try:
                    reply = await (plane.discover(service, use_cache=False) if service else plane.health())
                    if not service or reply["healthy"] >= healthy:
                        return reply
                    progress.update(task, description=f"{reply['healthy']}/{healthy}")
                except ControlPlaneUnreachable:
                    progress.update(task, description="not answering yet")
                except ControlPlaneError as exc:
                    if exc.status not in (404, 503):
                        raise
                if loop.time() >= give_up:
                    raise TimeoutError(f"timeout: {what} not ready after {timeout:g}s")
                await asyncio.sleep(0.2)

    reply = with_plane(ctx, go)
    if json_out:
        emit_json(reply)
    else:
        console.print("[green]ready[/]")
