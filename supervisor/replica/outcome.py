"""Pure decisions at the end of `replicate`: is the final position confirmed, and the exit code.

Exit 0 must mean "every committed row is in the replica". Litestream's local LTX files alone
cannot prove it: WAL frames it never turned into LTX (its start-up check needs S3; disk full
while staging) are invisible there. So a position is confirmed only when the final
`litestream replicate -once` (which converts and uploads everything still in the WAL) exited 0,
and the replica then holds a transaction at least as new as the newest local one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from supervisor.core.errors import ExitCode


@dataclass(frozen=True)
class FinalPosition:
    db: str
    local_txid: int
    remote_txid: int | None  # None: the replica could not be read
    db_has_data: bool  # the db or its WAL holds bytes (something may have been committed)
    catch_up_ok: bool  # the final upload (staged + Litestream's own shutdown, or -once) succeeded in time
    unstaged: bool = False  # the database holds committed frames no local LTX file covers
    content_problem: str | None = None  # the final content check: restored replica differs, or fails

    @property
    def confirmed(self) -> bool:
        if not self.db_has_data and self.local_txid == 0:
            return True  # nothing was ever written: nothing can be missing
        if not self.catch_up_ok or self.local_txid == 0 or self.unstaged or self.content_problem:
            return False  # WAL frames may never have become LTX: nothing proves they were sent
        return self.remote_txid is not None and self.remote_txid >= self.local_txid

    @property
    def reason(self) -> str | None:
        if self.confirmed:
            return None
        if not self.catch_up_ok:
            return "the final upload did not succeed: the last writes may not be uploaded"
        if self.unstaged:
            return "the database holds changes Litestream never staged (written after its last sync)"
        if self.content_problem:
            return f"the replica's final content is not the database's: {self.content_problem}"
        if self.remote_txid is None:
            return "replica unreachable: writes up to this position may not be uploaded"
        if self.local_txid == 0:
            return "the database holds data Litestream never recorded as sent"
        return "the replica is behind: these transactions were not uploaded"


def has_data(db: Path) -> bool:
    """Bytes in the db or its WAL (a new WAL-mode db stays 0 bytes until its first checkpoint)."""
    for path in (db, db.with_name(db.name + "-wal")):
        try:
            if path.stat().st_size > 0:
                return True
        except FileNotFoundError:
            continue
    return False


def shutdown_exit_code(finals: Sequence[FinalPosition], *, forced: bool, task_failed: bool,
                       app_code: int | None = None, extra: int | None = None) -> int:
    """The exit code of `replicate`, from what shutdown found.

    `extra`: an exit code already decided by a part that stopped replication (e.g. a lost lease);
    it wins over success, never over an unconfirmed final position.
    """
    code = int(ExitCode.OK)
    if forced or not all(f.confirmed for f in finals):
        code = int(ExitCode.FINAL_SYNC_UNCONFIRMED)
    elif extra is not None:
        code = extra
    elif task_failed:
        code = int(ExitCode.INTERNAL)  # a root task died: say so, even if the data is safe
    if app_code is not None and (app_code != 0 or code == 0):
        return app_code
    return code
