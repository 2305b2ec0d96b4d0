"""`restore` (the initContainer): its options; the run is supervisor/replica/restore.py."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from supervisor.commands.options import (
    DRY_RUN,
    build_settings,
    common_options,
    dry_run,
    env,
    exit_codes_epilog,
    lease_options,
    on_disk_options,
    one_db_options,
    option,
    run_async,
)
from supervisor.core.errors import ExitCode

if TYPE_CHECKING:
    pass


RESTORE_CODES = [ExitCode.OK, ExitCode.USAGE, ExitCode.CREDENTIALS_REFUSED, ExitCode.UNREACHABLE,
                 ExitCode.NO_SUCH_BUCKET, ExitCode.ACCESS_DENIED, ExitCode.INCOMPATIBLE,
                 ExitCode.RESTORE_FAILED, ExitCode.REPLICA_REQUIRED, ExitCode.LITESTREAM_MISSING,
                 ExitCode.NOT_SQLITE, ExitCode.LEASE_HELD, ExitCode.LOCAL_BEHIND, ExitCode.OTHER_WORKLOAD,
                 ExitCode.REPLICA_VANISHED, ExitCode.INTERRUPTED]


RESTORE_HELP = """Restore each database from its replica (initContainer); fail closed.

A database already on disk is left untouched. An empty replica prefix means a fresh start
(no file created). Anything the supervisor cannot read or recognise stops the pod.
"""


@click.command(help=RESTORE_HELP, epilog=exit_codes_epilog(RESTORE_CODES))
@common_options
@option("--db", envvar=env("DB"), type=click.Path(dir_okay=False),
         help="Restore only this database [default: all in the config]; with --bucket, the one database.")
@one_db_options
@option("--timeout", envvar=env("TIMEOUT"), type=click.FloatRange(min=0.1), default=600, show_default=True,
         help="Seconds for the whole restore, credentials included.")
@option("--require-replica", envvar=env("REQUIRE_REPLICA"), is_flag=True,
         help="Fail when a replica is empty instead of starting fresh.")
@lease_options
@on_disk_options
@DRY_RUN
def restore(**options: Any) -> int:
    settings = build_settings(options, head_start=True)  # STS answers while the rest is imported
    if options.get("dry_run"):
        return dry_run(settings)
    from supervisor.replica import restore as command

    return run_async(command.main, settings, handles_signals=True)
