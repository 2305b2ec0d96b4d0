"""`replicate` (the sidecar): its options; the run is supervisor/jobs/replicate.py."""

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
from supervisor.core import settings as settings_mod
from supervisor.core.errors import ExitCode, SupervisorError

if TYPE_CHECKING:
    pass


REPLICATE_CODES = [ExitCode.OK, ExitCode.INTERNAL, ExitCode.USAGE, ExitCode.CREDENTIALS_REFUSED,
                   ExitCode.UNREACHABLE, ExitCode.FINAL_SYNC_UNCONFIRMED, ExitCode.LITESTREAM_MISSING,
                   ExitCode.LEASE_LOST, ExitCode.LOCAL_BEHIND, ExitCode.OTHER_WORKLOAD]


REPLICATE_HELP = """Run `litestream replicate` with fresh credentials (sidecar).

Credentials are refreshed before expiry and after each token rotation without restarting
Litestream. Replication lag is measured against the replica and the database's own changes.
The replica is restored and checked on a schedule (--verify-interval). On SIGTERM: the final
upload through Litestream's control socket while it still holds the WAL, then the replica must
hold the final position and, restored, the database's content.
"""


@click.command(help=REPLICATE_HELP, epilog=exit_codes_epilog(
    REPLICATE_CODES, ok="every committed row is in the replica: final upload confirmed by position and, up to "
    "--final-verify-max-bytes, by content; or stopped before Litestream ran with nothing on disk a replica lacks")
             + "\n\n  With --exec: the app's own exit code (10 when the final upload is unconfirmed,"
             " 143 when stopped during the initial restore).")
@common_options
@option("--health-addr", envvar=env("HEALTH_ADDR"), default=settings_mod.DEFAULT_HEALTH_ADDR, show_default=True,
         help="Where /livez, /readyz and /metrics listen.")
@option("--max-lag", envvar=env("MAX_LAG"), type=click.FloatRange(min=0.1),
         help="Seconds of replication lag after which /readyz fails. [default: lag not in readiness]")
@option("--shutdown-timeout", envvar=env("SHUTDOWN_TIMEOUT"), type=click.FloatRange(min=0.1), default=30,
         show_default=True, help="Seconds for the whole shutdown after SIGTERM: stopping the app (--exec), "
         "Litestream's final upload, the catch-up and the verification. Give the pod more grace than this.")
@option("--refresh-margin", envvar=env("REFRESH_MARGIN"), type=click.FloatRange(min=1), default=900,
         show_default=True, help="Refresh credentials when this many seconds are left (or at half-life).")
@option("--lag-interval", envvar=env("LAG_INTERVAL"), type=click.FloatRange(min=0.1), default=5,
         show_default=True, help="Seconds between replica position probes while anything changes or waits; "
         "idle, the probe waits twice as long after each quiet round (up to 60 s, each wait drawn from "
         "80-120%) and wakes at once when a "
         "database changes.")
@option("--exec", "exec_command", envvar=env("EXEC"),
         help="Single-container mode: restore, replicate, run this command; exit with its code.")
@option("--verify-interval", envvar=env("VERIFY_INTERVAL"), type=click.FloatRange(min=0), default=3600,
         show_default=True, help="Seconds between restore drills (restore into scratch space, integrity check, "
         "content compared when the database holds still), jittered by 10%; 0 turns them off.")
@option("--final-verify-max-bytes", envvar=env("FINAL_VERIFY_MAX_BYTES"), type=click.IntRange(min=0),
         default=512 << 20, show_default=True, help="On SIGTERM the final upload is restored and compared with "
         "the database; a larger database gets the position check only (logged).")
@option("--scratch-dir", envvar=env("SCRATCH_DIR"), type=click.Path(file_okay=False),
         help="Where drills and the final check restore the replica. [default: the database's own directory]")
@option("--db", envvar=env("DB"), type=click.Path(dir_okay=False),
         help="With --bucket: the one database to replicate (no litestream.yml).")
@one_db_options
@lease_options
@on_disk_options
@DRY_RUN
def replicate(**options: Any) -> int:
    import shlex

    exec_command = options.get("exec_command")
    options["exec_command"] = shlex.split(exec_command) if exec_command else ()
    try:
        settings_mod.parse_addr(options["health_addr"])
    except SupervisorError as e:
        raise click.BadParameter(str(e).split(": ", 1)[-1], param_hint="'--health-addr'") from None
    # ready sooner: STS answers while the rest is imported
    settings = build_settings(options, head_start=True, long_running=True)
    if options.get("dry_run"):
        return dry_run(settings)
    from supervisor.jobs import replicate as command

    return run_async(command.main, settings, handles_signals=True)
