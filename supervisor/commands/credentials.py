"""`credentials`: credential_process JSON for the app or the aws CLI."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from supervisor.commands.options import (
    build_settings,
    common_options,
    env,
    exit_codes_epilog,
    option,
    run_async,
)
from supervisor.core import settings as settings_mod
from supervisor.core.errors import ExitCode

if TYPE_CHECKING:
    from supervisor.core.signals import Signals


CREDENTIALS_HELP = """Print credentials in the AWS credential_process JSON format (for the app or the aws CLI).
"""


CREDENTIALS_CODES = [ExitCode.OK, ExitCode.USAGE, ExitCode.CREDENTIALS_REFUSED, ExitCode.UNREACHABLE,
                     ExitCode.INTERRUPTED]


@click.command(help=CREDENTIALS_HELP, epilog=exit_codes_epilog(CREDENTIALS_CODES))
@common_options
@option("--timeout", envvar=env("TIMEOUT"), type=click.FloatRange(min=0.1), default=30, show_default=True,
         help="Seconds to obtain credentials.")
def credentials(**options: Any) -> int:
    from supervisor.jobs import check as command

    settings = build_settings(options)

    async def main(s: settings_mod.Settings, _signals: Signals) -> int:
        creds = await command.obtain_once(s)
        click.echo(json.dumps(creds.process_json()))
        return 0

    return run_async(main, settings)
