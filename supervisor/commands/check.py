"""`check`: its options; the diagnosis is supervisor/jobs/check.py."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from supervisor.commands.options import (
    build_settings,
    common_options,
    env,
    exit_codes_epilog,
    lease_options,
    one_db_options,
    option,
    run_async,
)
from supervisor.core.errors import ExitCode

if TYPE_CHECKING:
    pass


CHECK_HELP = """Explain what is wrong: token claims, STS answer, bucket access, replica layout, clock skew.
"""


@click.command(help=CHECK_HELP,
             epilog=exit_codes_epilog([ExitCode.OK, ExitCode.USAGE, ExitCode.CHECK_FAILED, ExitCode.INTERRUPTED]))
@common_options
@option("--db", envvar=env("DB"), type=click.Path(dir_okay=False),
         help="With --bucket: the one database to check (no litestream.yml).")
@one_db_options
@lease_options
@option("--timeout", envvar=env("TIMEOUT"), type=click.FloatRange(min=0.1), default=20, show_default=True,
         help="Seconds for each network step.")
def check(**options: Any) -> int:
    from supervisor.jobs import check as command

    return run_async(command.main, build_settings(options))
