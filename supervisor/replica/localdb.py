"""The database's files on this volume: what is there, what is in the way, and atomic placement.

`restore` asks `local_kind` before anything else (a database, an empty file, a WAL with no
database), moves aside what would shadow a restored file, and places the restored file with
fsync and rename, so a crash leaves either the old state or the new, never half of one.
"""

from __future__ import annotations

import contextlib
import glob
import os
import time
from pathlib import Path

from supervisor.litestream import sqlitedb, walfile
from supervisor.litestream.config import Database

SQLITE_HEADER = b"SQLite format 3\x00"
COMPANIONS = ("-wal", "-shm", "-journal")


def integrity_check(path: Path, pragma: str = "integrity_check") -> None:
    sqlitedb.check(path, pragma)


def fsync_and_rename(tmp: Path, target: Path) -> None:
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.rename(tmp, target)
    fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_temp(tmp: Path) -> None:
    for leftover in tmp.parent.glob(glob.escape(tmp.name) + "*"):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()


def temp_name(db: Path) -> str:
    return f".{db.name}.restoring-"


def remove_stale_temps(db: Path) -> list[str]:
    """Temp files of an earlier restore of this db that was SIGKILLed or OOM-killed (they are ours)."""
    removed = []
    if db.parent.is_dir():
        for leftover in db.parent.glob(glob.escape(temp_name(db)) + "*"):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
                removed.append(leftover.name)
    return removed


def local_kind(db: Path) -> tuple[str, int]:
    """("absent" | "sqlite" | "not_sqlite", size): only a file with SQLite's header counts as a database.
    Read through a descriptor that stays open: with --exec the guard may hold SQLite locks on it."""
    if db.is_dir():
        return "not_sqlite", 0
    header = walfile.PINNED.read(db, len(SQLITE_HEADER))
    if header is None:
        return "absent", 0
    try:
        size = db.stat().st_size
    except FileNotFoundError:
        return "absent", 0
    return ("sqlite" if header == SQLITE_HEADER else "not_sqlite"), size


def orphaned_wal(db: Path, size: int) -> str | None:
    """A 0-byte database beside a WAL holding frames (a truncated file, a copy that took only the
    -wal): SQLite deletes such a WAL when it opens the database, and every page in it is lost."""
    if size != 0 or walfile.read_wal_header(db) is None:
        return None
    wal = walfile.wal_path(db)
    wal_bytes = wal.stat().st_size if wal.exists() else 0
    if wal_bytes <= walfile.WAL_HEADER_SIZE:
        return None
    return (f"{db} is 0 bytes but {wal.name} beside it holds {wal_bytes} bytes of pages: SQLite deletes that WAL "
            "when it opens the database and its pages are lost; refusing to go on: move both files aside (never "
            "deleted) and restart to restore, or recover the pages from the WAL first")


def hazards(db: Database) -> list[Path]:
    """Files beside an absent db that SQLite or Litestream would apply to the restored one."""
    found = [db.path.with_name(db.path.name + suffix) for suffix in COMPANIONS]
    found.append(db.meta_dir)
    return [p for p in found if p.exists() or p.is_symlink()]


def move_aside(paths: list[Path], stamp: str) -> list[str]:
    moved = []
    for path in paths:
        target = path.with_name(f"{path.name}.stale-{stamp}")
        os.rename(path, target)
        moved.append(target.name)
    return moved


def stamp() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
