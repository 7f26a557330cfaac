"""`meshkit`: the command line (typer + rich); every command is a shell over the REST API.

The control plane and token are found from `--url`/`--token`/`--data-dir`, then
`MESHKIT_URL`/`MESHKIT_TOKEN`/`MESHKIT_ADMIN_TOKEN`, then the admin token file in the data
directory (`meshkit.remote.find_control_plane`). Tables on a terminal, `--json` for scripts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from meshkit.cli import ops, registry
from meshkit.cli.common import Settings
from meshkit.cli.manage import config_app, token_app
from meshkit.cli.traces import traces_app

app = typer.Typer(
    name="meshkit",
    help="meshkit: a Python service mesh. Run `meshkit serve`, then register, discover and call services.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def main(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(envvar="MESHKIT_URL", help="Control plane URL (default http://127.0.0.1:8080)."),
    ] = None,
    token: Annotated[
        str | None, typer.Option(help="Bearer token (else MESHKIT_TOKEN, MESHKIT_ADMIN_TOKEN, the data dir).")
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(envvar="MESHKIT_DATA_DIR", help="Where `serve` keeps state and its admin token."),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds per request to the control plane.")] = 10.0,
) -> None:
    ctx.obj = Settings(url=url, token=token, data_dir=data_dir, timeout=timeout)


for command in (registry.register, registry.deregister, registry.discover, registry.call,
                registry.topology, registry.health, registry.wait, ops.serve, ops.proxy, ops.alerts):  # fmt: skip
    app.command()(command)
app.add_typer(config_app, name="config")
app.add_typer(token_app, name="token")
app.add_typer(traces_app, name="traces")
app.add_typer(ops.kong_app, name="kong")

__all__ = ["app"]
