"""`verify`: its options; the run is supervisor/replica/verify.py."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from supervisor.commands.options import (
    build_settings,
    common_options,
    env,
    exit_codes_epilog,
    one_db_options,
    option,
    run_async,
)
from supervisor.core.errors import ExitCode

if TYPE_CHECKING:
    pass


VERIFY_HELP = """Restore each replica into scratch space and check it: a backup never restored is not a backup.

For each database (--db picks one): the free space is checked, the replica is restored (the newest
state, or --txid / --timestamp), PRAGMA integrity_check runs on it. With --compare (where the
database is: the sidecar's container), its content is compared page by page with the database at a
moment Litestream has staged exactly what the database holds; a database that never holds still
within --timeout is "not compared". Prints one line per database; exits 0 only when every one is
verified. Read-only: the credentials' session policy allows listing and reading the replicas only.
"""

VERIFY_CODES = [ExitCode.OK, ExitCode.USAGE, ExitCode.CREDENTIALS_REFUSED, ExitCode.UNREACHABLE,
                ExitCode.NO_SUCH_BUCKET, ExitCode.ACCESS_DENIED, ExitCode.LITESTREAM_MISSING,
                ExitCode.VERIFY_UNRESTORABLE, ExitCode.VERIFY_INTEGRITY, ExitCode.VERIFY_DIFFERS,
                ExitCode.VERIFY_NOT_COMPARED, ExitCode.VERIFY_NO_SPACE, ExitCode.INTERRUPTED]


@click.command(help=VERIFY_HELP, epilog=exit_codes_epilog(
    VERIFY_CODES, ok="every database verified: restorable, intact and (--compare) the same content"))
@common_options
@option("--db", envvar=env("DB"), type=click.Path(dir_okay=False),
         help="Verify only this database [default: all in the config]; with --bucket, the one database.")
@one_db_options
@option("--compare", envvar=env("COMPARE"), is_flag=True,
         help="Also compare the restored content with the database at its path (run where the database is).")
@option("--txid", envvar=env("TXID"), help="Restore up to this transaction (hex, as Litestream prints it).")
@option("--timestamp", envvar=env("TIMESTAMP"), help="Restore to this point in time (RFC 3339).")
@option("--scratch-dir", envvar=env("SCRATCH_DIR"), type=click.Path(file_okay=False),
         help="Where the replica is restored (needs the database's size free). [default: the temporary directory]")
@option("--timeout", envvar=env("TIMEOUT"), type=click.FloatRange(min=0.1), default=600, show_default=True,
         help="Seconds for the whole verification, credentials included.")
def verify(**options: Any) -> int:
    if options.get("compare") and (options.get("txid") or options.get("timestamp")):
        raise click.BadParameter("a comparison restores at the moment it compares: not with --txid or --timestamp",
                                 param_hint="'--compare'")
    if options.get("txid") and options.get("timestamp"):
        raise click.BadParameter("give one of --txid and --timestamp", param_hint="'--txid'")
    from supervisor.replica import verify as command

    return run_async(command.main, build_settings(options))
