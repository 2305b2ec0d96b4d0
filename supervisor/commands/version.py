"""`version`: the supervisor's and the Litestream binary's."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from supervisor import __version__
from supervisor.commands.options import (
    env,
    option,
)
from supervisor.core.errors import SupervisorError
from supervisor.litestream import binary as ls

if TYPE_CHECKING:
    pass


VERSION_HELP = """Print the supervisor's version and the Litestream binary's.
"""


@click.command(help=VERSION_HELP)
@option("--litestream", envvar=env("LITESTREAM"), help="Litestream binary to ask.")
def version(litestream: str | None) -> int:
    click.echo(f"litestream-supervisor {__version__}")
    try:
        click.echo(f"litestream {ls.version(litestream or 'litestream')}")
    except SupervisorError as e:
        click.echo(f"Error: {e}", err=True)
        return int(e.exit_code)
    return 0
