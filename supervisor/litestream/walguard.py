"""While no Litestream holds its read lock, the supervisor holds one; before a Litestream starts,
whatever it would misread is turned into a full snapshot. Nothing of the app's is ever locked.

The hazard (reproduced with bare Litestream 0.5.17, tests/e2e/test_faults.py): with Litestream away,
the app's checkpoint copies frames Litestream never saw into the database file and the next write
restarts the WAL; Litestream started on it takes the new frames for its own continuation and never
uploads the checkpointed ones. Rows go missing from every later restore, positions agree.

1. The guard: a read transaction on each database from the moment Litestream is stopped, fenced
   or found dead until the next one holds its own. SQLite cannot restart the WAL under a reader
   (a checkpoint backfills at most up to the oldest reader's snapshot), so frames Litestream has
   not read stay in the WAL for it. A reader never blocks a writer in WAL mode, and the app's own
   read transactions change nothing here: no checkpoint of ours waits for them.
2. Before every start (daemon or one-shot), under the guard: Litestream's last local LTX file
   says which WAL generation (salts) it read; if the WAL has restarted since (the supervisor was
   not running: a sidecar restart, an OOM kill), a no-op LTX file is added after it
   (supervisor/litestream/ltx.py), so that Litestream snapshots the whole database instead of continuing.

Only WAL-mode databases are guarded: a reader on a rollback-journal database would block writers.
"""

from __future__ import annotations

import contextlib
import ctypes
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apsw

from supervisor.core.logs import get_logger
from supervisor.litestream import ltx, sqlitedb, walfile
from supervisor.litestream.config import Database

log = get_logger("walguard")
LTX_NAME = re.compile(r"^(?P<min>[0-9a-f]{16})-(?P<max>[0-9a-f]{16})\.ltx$")
BUSY_MS = 2000  # a read transaction waits out WAL recovery, never a writer


def last_local_ltx(meta_dir: Path) -> Path | None:
    """Litestream's newest level-0 file: its position (what Litestream 0.5.17 reads at start)."""
    try:
        entries = list((meta_dir / "ltx" / "0").iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return None
    found = [(int(m["max"], 16), e) for e in entries if (m := LTX_NAME.match(e.name))]
    return max(found)[1] if found else None


def needs_snapshot(position: ltx.Header, wal: walfile.WalHeader | None,
                   index: walfile.DbPosition | None = None) -> bool:
    """True when frames Litestream never read may be in the database file only (a pure decision):
    the WAL restarted after its last recorded position; or a checkpoint copied the whole WAL,
    frames past that position included, so the next write restarts it, perhaps before Litestream
    reads them (a reader that began on a fully copied WAL, as the guard then does, reads the
    database file only and does not hold a restart back). Frames copied while others are not are
    safe: no restart can happen then, Litestream still finds them in the WAL."""
    if wal is None:
        return False  # no WAL: Litestream finds its position past the end and snapshots by itself
    if (wal.salt1, wal.salt2) != (position.wal_salt1, position.wal_salt2):
        return True
    if index is None or (index.salt1, index.salt2) != wal.salts:
        return False
    read_frames = max(0, (position.wal_end - walfile.WAL_HEADER_SIZE) // index.frame_size)
    return index.backfilled == index.frames > read_frames


def inode(path: Path) -> int | None:
    """The file's inode now (None: not there)."""
    try:
        return path.stat().st_ino
    except OSError:
        return None


@dataclass
class WalGuard:
    databases: list[Database]
    # Tests only (_LITESTREAM_SUPERVISOR_TEST_NO_WAL_GUARD): the hazard as bare Litestream has it,
    # for the final content check to catch.
    disabled: bool = False
    _held: dict[str, Any] = field(default_factory=dict)

    @property
    def holding(self) -> bool:
        return bool(self._held)

    def hold(self) -> list[str]:
        """A read transaction on every WAL-mode database not held yet (blocking, quick). A database
        replaced since it was taken (restore moved the old one aside) is taken again."""
        for db in [] if self.disabled else self.databases:
            held = self._held.get(db.name)
            if held is not None:
                if held[1] == inode(db.path):
                    continue
                self._close(self._held.pop(db.name)[0])
            if not walfile.is_wal_mode(db.path):
                continue
            try:
                con = sqlitedb.connect(db.path, read_only=False, busy_ms=BUSY_MS)
                # Our close must never write: no checkpoint (it would restart the WAL under nobody's
                # watch) and the WAL kept for the next Litestream.
                con.config(apsw.SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1)
                persist = ctypes.c_int(1)
                con.file_control("main", apsw.SQLITE_FCNTL_PERSIST_WAL, ctypes.addressof(persist))
                con.execute("BEGIN")
                con.execute("SELECT count(*) FROM sqlite_schema").fetchall()
            except apsw.Error as e:
                log.warning("wal_guard_failed", db=db.name, error=str(e),
                            detail="the WAL may restart while Litestream is away; the next start checks for it")
                continue
            self._held[db.name] = (con, inode(db.path))
        return list(self._held)

    def unheld(self) -> list[str]:
        """WAL-mode databases this guard does not hold a read transaction on (their file as it is now):
        while Litestream has one of them closed, its WAL may be checkpointed and restarted."""
        out = []
        for db in self.databases:
            held = None if self.disabled else self._held.get(db.name)
            if (held is None or held[1] != inode(db.path)) and walfile.is_wal_mode(db.path):
                out.append(db.name)
        return out

    @staticmethod
    def _close(con: Any) -> None:
        with contextlib.suppress(apsw.Error):
            con.execute("COMMIT")
        with contextlib.suppress(apsw.Error):
            con.close()

    def release(self) -> None:
        held, self._held = self._held, {}
        for con, _ in held.values():
            self._close(con)

    def prepare(self) -> list[str]:
        """Before a Litestream starts (call under hold()): a no-op LTX file after the last one of
        every database whose WAL restarted since, so Litestream snapshots it. Returns their names."""
        marked = []
        for db in [] if self.disabled else self.databases:
            last = last_local_ltx(db.meta_dir)
            if last is None or not db.path.exists():
                continue  # no position of its own: Litestream compares with the replica and snapshots
            try:
                position = ltx.read_header(last)
            except (OSError, ValueError) as e:
                log.warning("wal_position_unreadable", db=db.name, file=last.name, error=str(e))
                continue
            wal = walfile.read_wal_header(db.path)
            if needs_snapshot(position, wal, walfile.read_position(db.path)):
                assert wal is not None
                written = ltx.write_noop(last.parent, position, wal.salts)
                marked.append(db.name)
                log.info("snapshot_requested", db=db.name, after_txid=f"{position.max_txid:016x}",
                         file=written.name, detail="the WAL restarted, or was checkpointed, past where Litestream last "
                         "read it: frames it never saw may be in the database file only, so it snapshots the whole "
                         "database")
        return marked
