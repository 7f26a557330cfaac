"""What every CLI command shares: finding the plane, running a request, printing, failing cleanly.

Commands are shells (STYLE.md): they parse options, make one or two `ControlPlaneClient`
calls and print the answer as a rich table on a terminal or as JSON with `--json`. Every
failure ends as one line on stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import orjson
import typer
from rich.console import Console

from meshkit.errors import MeshError
from meshkit.remote import (
    ControlPlaneClient,
    ControlPlaneError,
    ControlPlaneTarget,
    ControlPlaneUnreachable,
    find_control_plane,
)

T = TypeVar("T")
console = Console()
errors = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the answer as JSON, for scripts.")]


@dataclass
class Settings:
    """The global options: where the control plane is and which token to present."""

    url: str | None = None
    token: str | None = None
    data_dir: Path | None = None
    timeout: float = 10.0

    def target(self) -> ControlPlaneTarget:
        return find_control_plane(self.url, self.token, self.data_dir)


def settings(ctx: typer.Context) -> Settings:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, Settings) else Settings()


def fail(message: str) -> NoReturn:
    errors.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def _hint(exc: ControlPlaneError, target: ControlPlaneTarget) -> str:
    if isinstance(exc, ControlPlaneUnreachable):
        return " (is `meshkit serve` running? set --url or MESHKIT_URL)"
    if exc.status == 401 and target.token is None:
        return " (no token found: pass --token, set MESHKIT_TOKEN, or point --data-dir at the plane's data)"
    return ""


def run_async(fn: Callable[[], Awaitable[T]]) -> T:
    """Run `fn()` to completion, turning every expected failure into `fail()`."""
    try:
        return asyncio.run(_as_coro(fn))
    except (ValueError, MeshError, OSError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted")


async def _as_coro(fn: Callable[[], Awaitable[T]]) -> T:
    return await fn()


def with_plane(ctx: typer.Context, fn: Callable[[ControlPlaneClient], Awaitable[T]]) -> T:
    """Open a client to the plane, run `fn(client)`, close it; errors become one line and exit 1."""
    conf = settings(ctx)
    target = conf.target()

    async def go() -> T:
        async with target.client(timeout=conf.timeout) as plane:
            return await fn(plane)

    try:
        return run_async(go)
    except ControlPlaneError as exc:
        fail(f"{exc}{_hint(exc, target)}")


def emit_json(data: Any) -> None:
    typer.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode())


def parse_pairs(values: list[str] | None, sep: str, what: str) -> dict[str, str]:
    """`["k=v", ...]` into a dict; a malformed item is a clear error."""
    out: dict[str, str] = {}
    for item in values or []:
        key, found, value = item.partition(sep)
        if not found or not key.strip():
            raise typer.BadParameter(f"{what}: expected KEY{sep}VALUE, got {item!r}")
        out[key.strip()] = value.strip() if sep == ":" else value
    return out


def state_style(state: str) -> str:
    return {"healthy": "green", "degraded": "yellow", "unhealthy": "red", "critical": "red"}.get(state, "dim")


def styled(state: str) -> str:
    return f"[{state_style(state)}]{state}[/]"
