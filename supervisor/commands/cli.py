"""The command line: the `litestream-supervisor` group, one command per module beside this one.

Commands import their machinery when they run, not here: `restore` sends its STS request before
asyncio, structlog and botocore are loaded (supervisor/identity/headstart.py). This is the only
module that exits the process.
"""

from __future__ import annotations

import os
import sys

import click

from supervisor.commands import (
    check,
    credentials,
    health,
    inject,
    replicate,
    restore,
    rgw_setup,
    verify,
    version,
    webhook,
)
from supervisor.core.errors import ExitCode, SupervisorError

# Help texts are strings passed to click, not docstrings: the image runs Python with -OO
# (PYTHONOPTIMIZE=2: ~2 MB less resident per pod), which strips docstrings from the code.
CLI_HELP = """Run Litestream with short-lived S3 credentials from a Kubernetes service-account token.

The projected token (AWS_WEB_IDENTITY_TOKEN_FILE) is traded at STS
(AssumeRoleWithWebIdentity) for temporary credentials, served to Litestream on a loopback
credentials endpoint and refreshed before they expire, with no restart.

Every option is also an environment variable LITESTREAM_SUPERVISOR_<OPTION>.
"""


@click.group(help=CLI_HELP, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
def cli() -> None:
    pass


cli.add_command(restore.restore)
cli.add_command(replicate.replicate)
cli.add_command(verify.verify)
cli.add_command(check.check)
cli.add_command(credentials.credentials)
cli.add_command(inject.inject)
cli.add_command(webhook.webhook)
cli.add_command(rgw_setup.rgw_setup)
cli.add_command(health.health)
cli.add_command(version.version)


def main() -> None:
    try:
        code = cli.main(standalone_mode=False)
    except click.exceptions.UsageError as e:
        # click names the flag and, for env-sourced values, the variable: one line.
        click.echo(f"Error: {e.format_message()}", err=True)
        sys.exit(int(ExitCode.USAGE))
    except SupervisorError as e:
        click.echo(f"Error: {e}", err=True)
        sys.exit(int(e.exit_code))
    except click.exceptions.Abort:
        sys.exit(int(ExitCode.INTERRUPTED))
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    # The work is done and logged: skip the interpreter's teardown of every module, object and
    # thread (~0.1 s after a restore, paid at every pod start). Nothing is buffered elsewhere.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else 0)
