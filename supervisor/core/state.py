"""The one State object: each field has one writer; health and metrics only read it."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class DatabaseState:
    """Written by the lag probe."""

    path: str
    local_txid: int = 0
    remote_txid: int = 0
    lag_seconds: float = 0.0
    last_upload_at: float | None = None  # newest LTX seen in the replica
    probe_ok_at: float | None = None
    probe_error: str | None = None
    # the database's own changes (its WAL index), whatever Litestream made of them
    changes: int = 0  # write transactions seen
    changed_at: float | None = None
    unstaged_since: float | None = None  # oldest change seen that no local LTX file covers yet


@dataclass
class LitestreamError:
    """One of Litestream's own error lines, as state (written by the child supervisor's relay)."""

    kind: str  # disk_full | sync | other
    message: str
    at: float


@dataclass
class VerifyState:
    """Written by the restore drills (supervisor/replica/drills.py) and the final check."""

    db: str
    last_success_at: float | None = None
    last_seconds: float = 0.0  # the newest drill's duration
    compared: bool = False  # the newest success compared content
    last_compared_at: float | None = None  # a drill compared content and found it the same
    failures: Counter[str] = field(default_factory=Counter)  # by reason
    last_result: str | None = None
    last_detail: str | None = None


@dataclass
class LeaseState:
    """Written by the db's Lease (supervisor/replica/leaseholder.py)."""

    db: str
    held: bool = False
    fenced: bool = False  # renewals unconfirmed for too long: Litestream stopped
    lost: bool = False  # another pod holds it now
    holder: str | None = None
    renewals: Counter[str] = field(default_factory=Counter)  # ok | error | lost
    takeovers: int = 0
    waited_seconds: float = 0.0


@dataclass
class State:
    started_at: float = field(default_factory=time.time)
    # written by the keeper
    credentials_expiration: float | None = None
    credentials_obtained_at: float | None = None
    sts_requests: Counter[str] = field(default_factory=Counter)
    last_sts_error: str | None = None
    last_sts_result: str | None = None  # ok | refused | unavailable: the newest exchange's outcome
    credential_refreshes: int = 0
    session_policy: bool = False  # the served credentials are narrowed by the inline session policy
    token_rotations: int = 0
    # written by the child supervisor
    child_running: bool = False
    child_pid: int | None = None
    child_restarts: int = 0
    child_started_at: float | None = None
    litestream_errors: Counter[str] = field(default_factory=Counter)  # by kind
    last_litestream_error: dict[str, LitestreamError] = field(default_factory=dict)  # by db ("" for none named)
    db_replacements: int = 0  # Litestream restarted onto a database file replaced under it
    # written by the lag probe
    databases: dict[str, DatabaseState] = field(default_factory=dict)
    # written by each database's lease (empty with --lease off)
    leases: dict[str, LeaseState] = field(default_factory=dict)
    # written by the restore drills (empty with --verify-interval 0)
    verify: dict[str, VerifyState] = field(default_factory=dict)
    verify_interval_seconds: float = 0.0
    # written by the lifecycle (replicate.py)
    started: bool = False
    shutting_down: bool = False
    # written by the health server's heartbeat task (time.monotonic())
    loop_heartbeat: float = field(default_factory=time.monotonic)

    def credentials_valid(self, now: float | None = None) -> bool:
        exp = self.credentials_expiration
        return exp is not None and exp > (time.time() if now is None else now)
