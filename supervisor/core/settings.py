"""All inputs, validated once: flags and LITESTREAM_SUPERVISOR_* (parsed by click) plus the
standard AWS variables, read here the way an AWS SDK reads them.

This is the only module that reads the process environment. Everything downstream gets a
frozen `Settings` and never looks at os.environ again.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from supervisor.core import workload as workloads
from supervisor.core.errors import ConfigError
from supervisor.core.workload import first_set

ENV_PREFIX = "LITESTREAM_SUPERVISOR_"
DEFAULT_CONFIG = "/etc/litestream.yml"
DEFAULT_HEALTH_ADDR = "0.0.0.0:9091"
DEFAULT_AUDIENCE = "sts.amazonaws.com"


@dataclass(frozen=True)
class AwsSettings:
    """Where and how to trade the projected token for credentials."""

    role_arn: str | None
    token_file: Path | None
    session_name: str
    # STS endpoint: --sts-endpoint > AWS_ENDPOINT_URL_STS > AWS_ENDPOINT_URL > replica endpoint.
    sts_endpoint: str | None
    # S3 endpoint when the replica has none: AWS_ENDPOINT_URL_S3 > AWS_ENDPOINT_URL.
    s3_endpoint: str | None
    region: str
    ca_bundle: Path | None
    # None: let the server choose (MinIO: the JWT's own expiry; AWS/Ceph: 1 h).
    duration_seconds: int | None
    # The audience the token must carry (diagnostics only; STS enforces its own).
    audience: str = DEFAULT_AUDIENCE
    sts_timeout_seconds: float = 10.0


@dataclass(frozen=True)
class KeeperSettings:
    # Refresh when this much validity is left (or at half-life for short lifetimes), so
    # Litestream's SDK, which renews 5 min before expiry, always finds >= 10 min on offer.
    refresh_margin_seconds: float = 900.0
    # Retry backoff after a failed exchange: starts here, doubles, capped, with jitter.
    retry_initial_seconds: float = 1.0
    retry_max_seconds: float = 60.0


@dataclass(frozen=True)
class ReplicateSettings:
    health_addr: tuple[str, int] = ("0.0.0.0", 9091)
    # Readiness fails when lag exceeds this; None keeps lag out of readiness (a MinIO blip
    # must not pull the app out of its Service).
    max_lag_seconds: float | None = None
    shutdown_timeout_seconds: float = 30.0
    lag_interval_seconds: float = 5.0
    exec_command: tuple[str, ...] = ()
    # Restore drills: every this many seconds (jittered); 0 turns them off.
    verify_interval_seconds: float = 3600.0
    # The final content check on SIGTERM: databases larger than this get the position check only.
    final_verify_max_bytes: int = 512 << 20


@dataclass(frozen=True)
class VerifySettings:
    """`verify` and the sidecar's drills."""

    # Where the replica is restored for the check. None: the temporary directory (verify), the
    # database's own directory (drills and the final check: the volume that holds it has room).
    scratch_dir: Path | None = None
    compare: bool = False
    txid: int | None = None
    timestamp: str | None = None


@dataclass(frozen=True)
class OneDatabase:
    """One database from flags alone (no litestream.yml): what the Component and the webhook use."""

    db: Path
    bucket: str
    replica_path: str
    endpoint: str | None = None
    sync_interval: str | None = None
    force_path_style: bool | None = None


@dataclass(frozen=True)
class Settings:
    config_path: Path
    litestream: str
    aws: AwsSettings
    keeper: KeeperSettings = field(default_factory=KeeperSettings)
    replicate: ReplicateSettings = field(default_factory=ReplicateSettings)
    log_level: str = "info"
    log_format: str = "auto"
    # restore / check
    timeout_seconds: float = 600.0
    db: Path | None = None
    require_replica: bool = False
    # One writer per replica (supervisor/replica/lease.py). Off is unsafe: overlapping pods fork the replica.
    lease: bool = True
    # How long a crashed holder blocks its successor; renewals every third of it.
    lease_ttl_seconds: float = 30.0
    # Narrow the credentials to the replicas' prefixes and leases with an inline session policy.
    session_policy: bool = True
    # Keep it even where the store refuses Litestream's batch deletes under it (--session-policy on);
    # auto drops it then, so expired files can go (identity/deletes.py).
    strict_session_policy: bool = False
    # --db + --bucket: the Litestream config comes from flags; litestream.yml is not read.
    one_db: OneDatabase | None = None
    # The workload this pod belongs to (a Deployment's, Rollout's or ReplicaSet's name, a StatefulSet
    # pod's own): the default replica path and the lease use it. None: not known exactly.
    workload: str | None = None
    # A database on disk behind its replica (or of unknown position): refuse | restore | keep.
    if_local_behind: str = "refuse"
    # namespace/workload whose replica this workload takes over on purpose (its lease names it).
    adopt_replica_from: str | None = None
    verify: VerifySettings = field(default_factory=VerifySettings)
    # The process environment as read once at start-up: litestream.yml's $VARs expand from it
    # and Litestream's environment is derived from it. Never printed (it may hold secrets).
    environment: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)


def parse_addr(value: str, option: str = "--health-addr") -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{option}: expected HOST:PORT (e.g. 0.0.0.0:9091), got {value!r}")
    return host or "0.0.0.0", int(port)


def url_problem(url: str) -> str | None:
    """What makes an endpoint URL unusable, or None. Caught here, not where it is first dialled:
    botocore takes a bad port for an unreachable server (retried until --timeout) and a bad IPv6
    host raised ValueError out of a client's constructor."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (parsed on access: ValueError when not a number from 0 to 65535)
    except ValueError as e:
        return "the port is not a number from 0 to 65535" if "Port" in str(e) else str(e)
    if parts.scheme not in ("http", "https"):
        return "expected a URL starting with http:// or https://"
    if not parts.hostname:
        return "no host"
    return None


def _endpoint(value: str | None, name: str) -> str | None:
    if value is None:
        return None
    problem = url_problem(value)
    if problem:
        raise ConfigError(f"{name}: {problem}, got {value!r} (e.g. http://minio.minio.svc:9000)")
    return value.rstrip("/")


def _txid(value: str | None) -> int | None:
    if not value:
        return None
    try:
        txid = int(value, 16)
    except ValueError:
        txid = -1
    if not 0 < txid < 1 << 64:
        raise ConfigError(f"--txid: expected a transaction ID in hex as Litestream prints it (e.g. 000000000000002a), "
                          f"got {value!r}")
    return txid


def _one_db(options: Mapping[str, Any], env: Mapping[str, str]) -> OneDatabase | None:
    bucket = options.get("bucket")
    replica_options = [name for name in ("replica_path", "endpoint", "sync_interval") if options.get(name)]
    if not bucket:
        if replica_options:
            flag = "--" + replica_options[0].replace("_", "-")
            raise ConfigError(f"{flag}: only with --bucket (the one-database settings); with a litestream.yml, "
                              "set it there")
        return None
    if options.get("config") or first_set(env, "LITESTREAM_CONFIG"):
        raise ConfigError("--bucket and --config / LITESTREAM_CONFIG: give either the one-database flags "
                          "(--db, --bucket, ...) or a litestream.yml, not both")
    db = options.get("db")
    if not db or not str(db).startswith("/"):
        raise ConfigError(f"--db: the one-database settings need the database's absolute path, got {db!r}")
    workload = workloads.workload_option(options.get("workload"))
    path = options.get("replica_path") or workloads.default_replica_path(env, Path(db), workload)
    endpoint = options.get("endpoint")
    return OneDatabase(Path(db), str(bucket), str(path), _endpoint(endpoint, "--endpoint") if endpoint else None,
                       options.get("sync_interval") or None)


def build(options: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Settings:
    """Settings from click's parsed options (flags and LITESTREAM_SUPERVISOR_*) and the AWS env."""
    env = os.environ if env is None else env
    token_file = options.get("token_file") or first_set(env, "AWS_WEB_IDENTITY_TOKEN_FILE")
    duration = options.get("duration_seconds")
    if duration is not None and duration < 1:
        raise ConfigError(f"--duration-seconds: expected a positive number of seconds, got {duration}")
    region = options.get("region") or first_set(env, "AWS_REGION", "AWS_DEFAULT_REGION") or "us-east-1"
    ca = options.get("ca_bundle") or first_set(env, "AWS_CA_BUNDLE")
    if ca and not Path(ca).is_file():
        raise ConfigError(f"--ca-bundle / AWS_CA_BUNDLE: file {ca} does not exist")
    aws = AwsSettings(
        role_arn=options.get("role_arn") or first_set(env, "AWS_ROLE_ARN"),
        token_file=Path(token_file) if token_file else None,
        session_name=options.get("session_name") or first_set(env, "AWS_ROLE_SESSION_NAME")
        or workloads.default_session_name(env),
        sts_endpoint=_endpoint(
            options.get("sts_endpoint") or first_set(env, "AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL"),
            "--sts-endpoint / AWS_ENDPOINT_URL_STS",
        ),
        s3_endpoint=_endpoint(first_set(env, "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"), "AWS_ENDPOINT_URL_S3"),
        region=region,
        ca_bundle=Path(ca) if ca else None,
        duration_seconds=duration,
        audience=options.get("audience") or DEFAULT_AUDIENCE,
    )
    keeper = KeeperSettings(
        refresh_margin_seconds=float(options.get("refresh_margin") or KeeperSettings.refresh_margin_seconds),
    )
    max_lag = options.get("max_lag")
    replicate = ReplicateSettings(
        health_addr=parse_addr(options.get("health_addr") or DEFAULT_HEALTH_ADDR),
        max_lag_seconds=float(max_lag) if max_lag else None,
        shutdown_timeout_seconds=float(options.get("shutdown_timeout") or 30.0),
        lag_interval_seconds=float(options.get("lag_interval") or 5.0),
        exec_command=tuple(options.get("exec_command") or ()),
        verify_interval_seconds=float(options["verify_interval"]) if options.get("verify_interval") is not None
        else ReplicateSettings.verify_interval_seconds,
        final_verify_max_bytes=int(options["final_verify_max_bytes"]) if options.get("final_verify_max_bytes")
        is not None else ReplicateSettings.final_verify_max_bytes,
    )
    config = options.get("config") or first_set(env, "LITESTREAM_CONFIG") or DEFAULT_CONFIG
    db = options.get("db")
    return Settings(
        config_path=Path(config),
        litestream=options.get("litestream") or "litestream",
        aws=aws,
        keeper=keeper,
        replicate=replicate,
        log_level=options.get("log_level") or "info",
        log_format=options.get("log_format") or "auto",
        timeout_seconds=float(options.get("timeout") or 600.0),
        db=Path(db) if db else None,
        require_replica=bool(options.get("require_replica")),
        lease=(options.get("lease") or "on") == "on",
        lease_ttl_seconds=float(options.get("lease_ttl") or 30.0),
        one_db=_one_db(options, env),
        workload=workloads.workload_name(env, workloads.workload_option(options.get("workload"))),
        if_local_behind=options.get("if_local_behind") or "refuse",
        verify=VerifySettings(
            scratch_dir=Path(options["scratch_dir"]) if options.get("scratch_dir") else None,
            compare=bool(options.get("compare")),
            txid=_txid(options.get("txid")),
            timestamp=options.get("timestamp") or None),
        adopt_replica_from=options.get("adopt_replica_from") or None,
        session_policy=(options.get("session_policy") or "auto") != "off",
        strict_session_policy=options.get("session_policy") == "on",
        environment=MappingProxyType(dict(env)),
    )


def require_web_identity(aws: AwsSettings) -> tuple[str, Path]:
    """The two inputs without which no credentials can be had."""
    if not aws.role_arn:
        raise ConfigError("--role-arn / AWS_ROLE_ARN: not set (the role to assume, e.g. "
                          "arn:minio:iam:::role/<id> printed by MinIO at start-up)")
    if not aws.token_file:
        raise ConfigError("--token-file / AWS_WEB_IDENTITY_TOKEN_FILE: not set (the projected "
                          "service-account token, e.g. /var/run/secrets/tokens/token)")
    return aws.role_arn, aws.token_file
