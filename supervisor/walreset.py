"""Empty the WAL before a Litestream starts on a database it was away from.

While no Litestream holds its read lock (it died, was fenced, or this sidecar restarted beside a
running app), SQLite's automatic PASSIVE checkpoint copies frames Litestream never saw into the db
file and the next commit restarts the WAL from its first frame, leaving the old frames behind it.
Litestream 0.5.17, started on that WAL, finds its last frame still in place, takes the new frames
for its own continuation and writes an LTX file that lacks the checkpointed pages; a restore (or any
compaction containing that file) then misses rows. `-force-snapshot` does not help: its sync writes
the bad LTX file first. Reproduced with bare Litestream; tests/e2e/test_faults.py has both cases.

`PRAGMA wal_checkpoint(TRUNCATE)` puts every frame in the db file and empties the WAL, so the
next Litestream finds its position past the end of the WAL (or, if the app already wrote more,
frames with other salts) and takes a full snapshot itself.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from supervisor.logs import get_logger

log = get_logger("walreset")
BUSY_SECONDS = 5.0  # per attempt: a checkpoint waits for the app's open transactions to end


def litestream_left_state(meta_dir: Path) -> bool:
    """Litestream's local state (LTX files) from an earlier process."""
    try:
        return any(p.is_file() for p in meta_dir.rglob("*"))
    except OSError:
        return True  # unreadable: assume the worst, a full snapshot costs only time


def truncate(db: Path, busy_seconds: float = BUSY_SECONDS) -> tuple[bool, str]:
    """(done, why not). A missing db needs nothing; the db is never created."""
    if not db.exists():
        return True, ""
    import sqlite3  # only after Litestream was away: the sidecar does not carry it otherwise (~1 MB)

    try:
        con = sqlite3.connect(f"file:{db}?mode=rw", uri=True, timeout=busy_seconds, isolation_level=None)
    except sqlite3.Error as e:
        return False, f"cannot open {db}: {e}"
    try:
        busy, _, _ = con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            return False, f"{db} stayed busy for {busy_seconds:g} s (a transaction of the app kept the WAL)"
        return True, ""
    except sqlite3.Error as e:
        return False, f"checkpoint of {db} failed: {e}"
    finally:
        con.close()


async def truncate_all(dbs: list[Path], phase: str) -> bool:
    """Each db in a thread (sqlite blocks); logs what it did. True when every WAL is empty."""
    ok = True
    for db in dbs:
        done, why = await asyncio.get_running_loop().run_in_executor(None, truncate, db)
        if done:
            log.info("wal_reset", db=str(db), phase=phase, detail="Litestream was away while the app could "
                     "write: the WAL is checkpointed and emptied, so Litestream takes a full snapshot")
        else:
            log.error("wal_reset_failed", db=str(db), phase=phase, error=why)
            ok = False
    return ok
