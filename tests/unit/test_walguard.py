"""The WAL hazard without touching the app's locks (issue 26, part 2), on real SQLite files.

The app is another process here, as it is in a pod: SQLite's locks are POSIX locks, which two
connections of one process never see from each other (two SQLite libraries in one process even less).
"""

from __future__ import annotations

import sqlite3
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from supervisor.litestream import ltx, walfile
from supervisor.litestream.config import Database, Replica
from supervisor.litestream.walguard import WalGuard, needs_snapshot
from supervisor.replica import positions
from supervisor.replica.localdb import local_kind

APP = r"""
import sqlite3, sys
con = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=0)  # busy_timeout 0: any wait fails
con.execute("PRAGMA journal_mode=WAL"); con.execute("PRAGMA wal_autocheckpoint=0")
con.execute("CREATE TABLE IF NOT EXISTS t(x)")
for line in sys.stdin:
    rows, checkpoint = line.split()
    failed = 0
    for i in range(int(rows)):
        try:
            con.execute("INSERT INTO t VALUES (?)", ("x" * 200,))
        except sqlite3.OperationalError:
            failed += 1
    ckpt = con.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone() if checkpoint == "1" else (0, -1, -1)
    print(failed, *ckpt, flush=True)
"""


class App:
    """The app: another process, its connection open all along (its close would delete the WAL)."""

    def __init__(self, tmp_path: Path, db: Path) -> None:
        script = tmp_path / "app.py"
        script.write_text(APP)
        self.proc = subprocess.Popen([sys.executable, str(script), str(db)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)

    def commit(self, rows: int, checkpoint: bool = True) -> tuple[int, int, int, int]:
        """Commits one row at a time, then a PASSIVE checkpoint: (failed, busy, frames, backfilled)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{rows} {int(checkpoint)}\n")
        self.proc.stdin.flush()
        failed, busy, frames, backfilled = (int(x) for x in self.proc.stdout.readline().split())
        return failed, busy, frames, backfilled

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


def database(tmp_path: Path) -> Database:
    return Database(tmp_path / "app.db", Replica("b", "app", None, "us-east-1", True), tmp_path / ".app.db-litestream")


def test_the_guard_keeps_the_wal_from_restarting_and_never_blocks_a_writer(tmp_path: Path) -> None:
    """Litestream died with frames it never read in the WAL: from then on none can be checkpointed
    away behind a restart."""
    db = database(tmp_path)
    app = App(tmp_path, db.path)
    app.commit(10, checkpoint=False)
    guard = WalGuard([db])
    assert guard.hold() == [db.name]
    before = walfile.read_wal_header(db.path)
    # the lag probe and restore read these files while the guard holds: a descriptor of them closed
    # in this process would drop every POSIX lock the process holds on them, the guard's included
    for _ in range(3):
        walfile.read_position(db.path)
        walfile.is_wal_mode(db.path)
        local_kind(db.path)
    failed, busy, frames, backfilled = app.commit(300)
    assert failed == 0 and busy == 0  # a writer with busy_timeout 0 never waited on us
    assert backfilled < frames  # the checkpoint could not go past our snapshot...
    app.commit(5)
    assert walfile.read_wal_header(db.path) == before  # ...so the WAL never restarted
    guard.release()
    app.commit(5)
    failed, _, frames, backfilled = app.commit(5)
    assert failed == 0 and frames == backfilled  # released: checkpoints complete again
    app.close()


def test_a_wal_copied_whole_before_the_guard_came_asks_for_a_snapshot(tmp_path: Path) -> None:
    """Between Litestream's death and the guard (milliseconds) a checkpoint may copy every frame,
    including ones Litestream never read: a reader that begins on a fully copied WAL does not hold
    the next restart back, so the next start must snapshot."""
    db = database(tmp_path)
    app = App(tmp_path, db.path)
    app.commit(5, checkpoint=False)
    wal = walfile.read_wal_header(db.path)
    assert wal is not None
    last_ltx(db, wal.salts, 32 + 2 * (4096 + 24))  # Litestream read 2 frames of them
    guard = WalGuard([db])
    guard.hold()
    assert guard.prepare() == []  # the frames it did not read are still in the WAL for it
    guard.release()
    _, _, frames, backfilled = app.commit(0)  # now a checkpoint copies them all into the file...
    assert frames == backfilled > 2
    guard.hold()
    assert guard.prepare() == [db.name]  # ...before a restart hides them: snapshot
    guard.release()
    app.close()


def test_the_guard_never_writes_not_even_when_it_closes_last(tmp_path: Path) -> None:
    db = database(tmp_path)
    app = App(tmp_path, db.path)
    app.commit(50)
    wal = walfile.wal_path(db.path)
    guard = WalGuard([db])
    guard.hold()
    app.close()  # the app goes: we are the last connection
    size, mtime = wal.stat().st_size, db.path.stat().st_mtime_ns
    guard.release()  # the last connection: SQLite would checkpoint and delete the WAL on close
    assert wal.exists() and wal.stat().st_size == size and db.path.stat().st_mtime_ns == mtime


def test_a_rollback_journal_database_is_never_guarded(tmp_path: Path) -> None:
    db = database(tmp_path)
    con = sqlite3.connect(db.path)
    con.execute("CREATE TABLE t(x)")
    con.commit()
    con.close()
    assert WalGuard([db]).hold() == []  # a reader there would block the app's writers


def last_ltx(db: Database, salts: tuple[int, int], wal_end: int, txid: int = 7) -> ltx.Header:
    level0 = db.meta_dir / "ltx" / "0"
    level0.mkdir(parents=True, exist_ok=True)
    header = ltx.Header(ltx.FLAG_NO_CHECKSUM, 4096, 3, txid, txid, 0, 0, 32, wal_end - 32, *salts)
    (level0 / ltx.filename(txid)).write_bytes(header.encode() + b"\0" * 31)
    return header


def test_a_wal_restarted_behind_litestreams_back_becomes_a_snapshot_request(tmp_path: Path) -> None:
    db = database(tmp_path)
    app = App(tmp_path, db.path)
    app.commit(20, checkpoint=False)
    wal = walfile.read_wal_header(db.path)
    assert wal is not None
    guard = WalGuard([db])
    last_ltx(db, wal.salts, 32 + 5 * (4096 + 24))
    guard.hold()
    assert guard.prepare() == []  # the same generation: Litestream continues where it read
    guard.release()
    app.commit(1)  # the app's checkpoint completed: this write restarts the WAL
    app.commit(1)
    assert walfile.read_wal_header(db.path) != wal
    guard.hold()
    assert guard.prepare() == [db.name]
    marker = db.meta_dir / "ltx" / "0" / ltx.filename(8)
    header = ltx.read_header(marker)
    current = walfile.read_wal_header(db.path)
    assert current is not None and header.min_txid == header.max_txid == 8 and header.commit == 3
    assert header.wal_end == ltx.WAL_HEADER_SIZE and (header.wal_salt1, header.wal_salt2) != current.salts
    guard.release()
    app.close()


def test_needs_snapshot_only_for_another_generation() -> None:
    h = ltx.Header(2, 4096, 3, 7, 7, 0, 0, 32, 4120, 11, 22)
    assert not needs_snapshot(h, None)
    assert not needs_snapshot(h, walfile.WalHeader(4096, 0, 11, 22))
    assert needs_snapshot(h, walfile.WalHeader(4096, 1, 12, 99))


def test_the_noop_ltx_file_is_what_ltx_verifies(tmp_path: Path) -> None:
    """Byte layout of superfly/ltx v0.5.2's encoder for a file with no pages; its CRC-64/ISO is Go's."""
    assert ltx.crc64(b"123456789") == 0xB90956C775A41001  # the CRC-64/GO-ISO check value
    after = ltx.Header(ltx.FLAG_NO_CHECKSUM, 4096, 6, 2, 2, 1, 0, 24752, 424360, 1, 2)
    data = ltx.noop(after, (7, 9), now_ms=1000)
    assert len(data) == ltx.HEADER_SIZE + 6 + 1 + 8 + ltx.TRAILER_SIZE
    header = ltx.Header.decode(data)
    assert (header.min_txid, header.max_txid, header.commit, header.page_size) == (3, 3, 6, 4096)
    assert (header.wal_offset, header.wal_size) == (32, 0) and (header.wal_salt1, header.wal_salt2) != (7, 9)
    post, checksum = struct.unpack(">QQ", data[-16:])
    assert post == 0 and checksum == ltx.CHECKSUM_FLAG | ltx.crc64(data[:-8])


@pytest.mark.parametrize(("frames", "salts", "end", "beyond"), [
    (0, (1, 2), 32, False),
    (5, (1, 2), 32 + 5 * 4120, False),  # Litestream read all of it
    (6, (1, 2), 32 + 5 * 4120, True),  # one committed frame it has not staged
    (1, (2, 3), 32 + 5 * 4120, True),  # a new generation it has not read
])
def test_changes_beyond_litestreams_position(frames: int, salts: tuple[int, int], end: int, beyond: bool) -> None:
    position = walfile.DbPosition(salts[0], salts[1], frames, 4096, 0)
    assert positions.beyond(position, positions.Coverage((1, 2), end, 7)) is beyond
    assert positions.beyond(position, None) is (frames > 0)


def test_the_database_position_is_read_from_the_wal_index(tmp_path: Path) -> None:
    db = database(tmp_path)
    con = sqlite3.connect(db.path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE t(x)")
    first = walfile.read_position(db.path)
    con.execute("INSERT INTO t VALUES (1)")
    second = walfile.read_position(db.path)
    assert first is not None and second is not None and second.frames > first.frames
    assert second.wal_end == walfile.wal_path(db.path).stat().st_size
    assert (second.salt1, second.salt2) == walfile.read_wal_header(db.path).salts  # type: ignore[union-attr]
    con.close()
    time.sleep(0.01)
