"""Exceptions the CLI maps to exit codes. Only the CLI exits; everything else raises these.

The codes are part of the interface (initContainer logs and alerts key on them), documented
in `--help` and the README.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    INTERNAL = 1
    USAGE = 2  # bad flag, env var or litestream.yml
    CREDENTIALS_REFUSED = 3  # token missing/expired or STS refused it
    UNREACHABLE = 4  # STS or S3 could not be reached within --timeout
    NO_SUCH_BUCKET = 5
    ACCESS_DENIED = 6  # credentials work but may not read the replica
    INCOMPATIBLE = 7  # the prefix holds objects that are not a Litestream replica
    RESTORE_FAILED = 8  # litestream restore or the integrity check failed
    REPLICA_REQUIRED = 9  # --require-replica and the prefix is empty
    FINAL_SYNC_UNCONFIRMED = 10  # replicate: the replica does not hold the final position
    LITESTREAM_MISSING = 11
    CHECK_FAILED = 12
    NOT_SQLITE = 13  # restore: a file at the db path is not SQLite while the replica holds data
    LEASE_HELD = 14  # restore/replicate: another pod held the lease for all of --timeout
    LEASE_LOST = 15  # replicate: another pod took the lease over; this pod stopped uploading
    LOCAL_BEHIND = 16  # a database on disk is behind its replica (or its position is unknown)
    OTHER_WORKLOAD = 17  # the replica's lease names another workload
    REPLICA_VANISHED = 18  # the replica holds less than its lease saw in it (emptied, lost its newest files)
    VERIFY_UNRESTORABLE = 19  # verify: the replica cannot be restored
    VERIFY_INTEGRITY = 20  # verify: restored, but PRAGMA integrity_check fails
    VERIFY_DIFFERS = 21  # verify --compare: the replica's content differs from the database's
    VERIFY_NOT_COMPARED = 22  # verify --compare: the database never held still long enough to compare
    VERIFY_NO_SPACE = 23  # verify: not enough free space in --scratch-dir
    INTERRUPTED = 143  # SIGTERM/SIGINT during restore


EXIT_CODE_HELP = {
    ExitCode.OK: "done: restored, db already present, or replica genuinely empty",
    ExitCode.INTERNAL: "unexpected internal error (a bug: please report it)",
    ExitCode.USAGE: "bad option, environment variable or litestream.yml",
    ExitCode.CREDENTIALS_REFUSED: "token missing, expired or refused by STS",
    ExitCode.UNREACHABLE: "STS or S3 unreachable within --timeout",
    ExitCode.NO_SUCH_BUCKET: "the replica's bucket does not exist",
    ExitCode.ACCESS_DENIED: "credentials valid but access to the replica denied",
    ExitCode.INCOMPATIBLE: "replica prefix holds objects that are not a Litestream replica",
    ExitCode.RESTORE_FAILED: "litestream restore or the integrity check failed",
    ExitCode.REPLICA_REQUIRED: "--require-replica and the replica is empty",
    ExitCode.FINAL_SYNC_UNCONFIRMED: "replicate: replica does not hold the final local position",
    ExitCode.LITESTREAM_MISSING: "the litestream binary is missing or does not run",
    ExitCode.CHECK_FAILED: "check: at least one step failed",
    ExitCode.NOT_SQLITE: "a file at the db path is not a SQLite database while the replica holds data",
    ExitCode.LEASE_HELD: "another pod held the replica's lease for all of --timeout",
    ExitCode.LEASE_LOST: "replicate: another pod took the replica's lease over; uploads stopped",
    ExitCode.LOCAL_BEHIND: "a database on disk is behind its replica, or its position is unknown, while the "
                           "replica holds data (see --if-local-behind)",
    ExitCode.OTHER_WORKLOAD: "the replica belongs to another workload (its lease says so; see --adopt-replica-from)",
    ExitCode.REPLICA_VANISHED: "the replica holds less than its lease saw in it (deleted, or lost its newest files)",
    ExitCode.VERIFY_UNRESTORABLE: "verify: the replica cannot be restored (objects missing or corrupt)",
    ExitCode.VERIFY_INTEGRITY: "verify: the restored replica fails PRAGMA integrity_check",
    ExitCode.VERIFY_DIFFERS: "verify --compare: the replica's content differs from the database",
    ExitCode.VERIFY_NOT_COMPARED: "verify --compare: the database kept changing; content not compared",
    ExitCode.VERIFY_NO_SPACE: "verify: not enough free space in --scratch-dir",
    ExitCode.INTERRUPTED: "interrupted by SIGTERM/SIGINT (no file left behind)",
}


class SupervisorError(Exception):
    """An expected failure with a one-line message that says what to fix."""

    exit_code: ExitCode = ExitCode.INTERNAL

    def __init__(self, message: str, *, exit_code: ExitCode | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class ConfigError(SupervisorError):
    exit_code = ExitCode.USAGE


class TokenError(SupervisorError):
    """The token file is missing, unreadable, malformed or expired."""

    exit_code = ExitCode.CREDENTIALS_REFUSED


class CredentialsRefused(SupervisorError):
    """STS answered and said no: retrying the same token will not help."""

    exit_code = ExitCode.CREDENTIALS_REFUSED


class Unreachable(SupervisorError):
    """A transient failure (connection, timeout, 5xx, throttling): worth retrying."""

    exit_code = ExitCode.UNREACHABLE


class OutOfTime(Unreachable):
    """The command's budget (--timeout) ran out: says when, not why the step kept failing."""


class ReplicaError(SupervisorError):
    exit_code = ExitCode.INCOMPATIBLE


class RestoreFailed(SupervisorError):
    exit_code = ExitCode.RESTORE_FAILED


class RestoreTimeout(Unreachable):
    """The replica answers, but the download did not finish within --timeout."""


class LocalNotSQLite(SupervisorError):
    exit_code = ExitCode.NOT_SQLITE


class LeaseConflict(SupervisorError):
    """412: the lease object changed since it was read (someone else wrote it)."""


class LeaseHeld(SupervisorError):
    exit_code = ExitCode.LEASE_HELD


class LeaseLost(SupervisorError):
    exit_code = ExitCode.LEASE_LOST


class LocalBehind(SupervisorError):
    exit_code = ExitCode.LOCAL_BEHIND


class OtherWorkload(SupervisorError):
    exit_code = ExitCode.OTHER_WORKLOAD


class ReplicaVanished(SupervisorError):
    exit_code = ExitCode.REPLICA_VANISHED


class LeaseUnsupported(SupervisorError):
    """The store ignores conditional writes: a lease there would be a lie."""

    exit_code = ExitCode.USAGE


class LitestreamMissing(SupervisorError):
    exit_code = ExitCode.LITESTREAM_MISSING


class Interrupted(SupervisorError):
    exit_code = ExitCode.INTERRUPTED
