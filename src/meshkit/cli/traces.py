"""Trace commands: `meshkit traces search` as a table, `meshkit traces show ID` as a tree."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table
from rich.tree import Tree

from meshkit.cli.common import JsonOpt, console, emit_json, with_plane

traces_app = typer.Typer(help="Search traces and show one as a tree.")


@traces_app.command("search")
def search(
    ctx: typer.Context,
    service: Annotated[str | None, typer.Option(help="Traces touching this service.")] = None,
    operation: Annotated[str | None, typer.Option(help="Traces with a span of this name.")] = None,
    min_duration: Annotated[float | None, typer.Option(help="Slowest span at least this many ms.")] = None,
    max_duration: Annotated[float | None, typer.Option(help="Spans at most this many ms.")] = None,
    errors: Annotated[bool, typer.Option("--errors", help="Only traces with an error.")] = False,
    limit: Annotated[int, typer.Option(help="At most this many traces.")] = 20,
    json_out: JsonOpt = False,
) -> None:
    """Find traces by service, operation, duration or errors."""
    reply = with_plane(
        ctx, lambda plane: plane.traces(service, operation, min_duration, max_duration, errors, limit)
    )
    if json_out:
        emit_json(reply)
        return
    rows = reply.get("traces", reply) if isinstance(reply, dict) else reply
    table = Table(title=f"{len(rows)} traces")
    for column in ("trace id", "root", "services", "spans", "errors", "ms"):
        table.add_column(column, justify="right" if column in ("spans", "errors", "ms") else "left")
    for t in rows:
        root = f"{t.get('root_service', '')}: {t.get('root_operation', '')}"
        errs = t.get("error_count", 0)
        table.add_row(
            t["trace_id"], root, ", ".join(t.get("services", [])), str(t.get("span_count", "")),
            f"[red]{errs}[/]" if errs else "0", f"{t.get('duration_ms', 0):.1f}",
        )  # fmt: skip
    console.print(table)


def _label(span: dict[str, Any]) -> str:
    mark = " [red]error[/]" if span.get("error") else ""
    orphan = " [dim](parent missing)[/]" if span.get("orphan") else ""
    return (
        f"[bold]{span.get('service', '?')}[/] {span.get('operation', '?')} "
        f"[cyan]{span.get('duration_ms', 0):.1f} ms[/] [dim]{span.get('kind', '')}[/]{mark}{orphan}"
    )


def _grow(node: Tree, span: dict[str, Any]) -> None:
    branch = node.add(_label(span), highlight=False)
    for child in span.get("children", []):
        _grow(branch, child)


@traces_app.command("show")
def show(
    ctx: typer.Context,
    trace_id: Annotated[str, typer.Argument(help="32 hex characters.")],
    json_out: JsonOpt = False,
) -> None:
    """One trace as a tree of spans, with time per service."""
    reply = with_plane(ctx, lambda plane: plane.trace(trace_id))
    if json_out:
        emit_json(reply)
        return
    summary = reply.get("summary", {})
    tree = Tree(f"trace [bold]{reply['trace_id']}[/] {summary.get('duration_ms', 0):.1f} ms", highlight=False)
    for span in reply.get("spans", []):
        _grow(tree, span)
    console.print(tree)
    per_service = summary.get("time_per_service_ms", {})
    if per_service:
        table = Table(title="time per service (self)")
        table.add_column("service")
        table.add_column("ms", justify="right")
        for name, ms in per_service.items():
            table.add_row(name, f"{ms:.1f}")
        console.print(table)
