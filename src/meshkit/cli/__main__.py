"""`python -m meshkit.cli`: the same as the `meshkit` command."""

from meshkit.cli import app

app(prog_name="meshkit")
