"""Where a WAL database is, read from its files without opening it: the WAL header (salts: which
generation of the WAL this is) and the WAL index in `-shm` (how many frames are committed).

SQLite restarts the WAL after a complete checkpoint: the next writer writes from the first frame
again with salt-1 incremented and a new salt-2. Litestream records, in each LTX file it writes,
the salts and the WAL offset it read up to. Comparing the two says whether the database has
changes Litestream has not staged yet, and whether the WAL restarted behind its back.
"""

from __future__ import annotations

import os
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

WAL_HEADER_SIZE = 32
FRAME_HEADER_SIZE = 24
WAL_MAGICS = (0x377F0682, 0x377F0683)
SQLITE_HEADER = b"SQLite format 3\x00"
_INDEX_HEADER = struct.Struct("=IIIBBHIIIIIIII")  # native byte order, as SQLite keeps it in shared memory
INDEX_HEADER_SIZE = _INDEX_HEADER.size  # 48


class PinnedFiles:
    """Reads of files SQLite may hold POSIX locks on in this process (the database, its -wal and
    -shm: the guard's read transaction). Closing *any* descriptor of a file drops every fcntl lock
    the process holds on it, so these descriptors stay open: one per path, replaced only when the
    path names another file (then the old file's locks no longer matter)."""

    def __init__(self) -> None:
        self._fds: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def read(self, path: Path, size: int, offset: int = 0) -> bytes | None:
        """Up to `size` bytes at `offset`, or None when there is no such file."""
        key = str(path)
        with self._lock:
            try:
                inode = os.stat(key).st_ino
            except (FileNotFoundError, NotADirectoryError):
                return None
            fd, known = self._fds.get(key, (-1, -1))
            if known != inode:
                try:
                    fresh = os.open(key, os.O_RDONLY | os.O_CLOEXEC)
                except (FileNotFoundError, IsADirectoryError):
                    return None
                if fd >= 0:
                    os.close(fd)
                fd = fresh
                self._fds[key] = (fd, os.fstat(fd).st_ino)
        return os.pread(fd, size, offset)


PINNED = PinnedFiles()


@dataclass(frozen=True)
class WalHeader:
    page_size: int
    checkpoint_seq: int
    salt1: int
    salt2: int

    @property
    def salts(self) -> tuple[int, int]:
        return (self.salt1, self.salt2)


def wal_path(db: Path) -> Path:
    return db.with_name(db.name + "-wal")


def read_wal_header(db: Path) -> WalHeader | None:
    """None when there is no WAL, or it has no header yet (created, nothing written)."""
    data = PINNED.read(wal_path(db), WAL_HEADER_SIZE)
    if data is None or len(data) < WAL_HEADER_SIZE:
        return None
    magic, _version, page_size, seq, salt1, salt2 = struct.unpack(">IIIIII", data[:24])
    if magic not in WAL_MAGICS:
        return None
    return WalHeader(page_size, seq, salt1, salt2)


def is_wal_mode(db: Path) -> bool:
    """The database file says WAL (read and write versions 2): Litestream's kind, and the only one
    where a reader never blocks a writer."""
    head = PINNED.read(db, 20)
    return head is not None and head[:16] == SQLITE_HEADER and head[18:20] == b"\x02\x02"


@dataclass(frozen=True)
class DbPosition:
    """How far the database's WAL goes right now: the generation (salts) and the committed frames."""

    salt1: int
    salt2: int
    frames: int  # mxFrame: committed frames in this generation
    page_size: int
    change: int  # iChange: bumped by every write transaction
    backfilled: int = 0  # nBackfill: frames a checkpoint has copied into the database file
    pages: int = 0  # nPage: the database's size in pages at mxFrame

    @property
    def frame_size(self) -> int:
        return self.page_size + FRAME_HEADER_SIZE

    @property
    def wal_end(self) -> int:
        return WAL_HEADER_SIZE + self.frames * (self.page_size + FRAME_HEADER_SIZE)


def read_position(db: Path) -> DbPosition | None:
    """From the WAL index header in `-shm` (both copies must agree, as SQLite reads it); None when
    no connection has the database open in WAL mode (no -shm), or a write is mid-update."""
    data = PINNED.read(db.with_name(db.name + "-shm"), 2 * INDEX_HEADER_SIZE + 4)
    if data is None:
        return None
    first, second = data[:INDEX_HEADER_SIZE], data[INDEX_HEADER_SIZE:2 * INDEX_HEADER_SIZE]
    if len(data) < 2 * INDEX_HEADER_SIZE + 4 or first != second:  # torn: a write is updating it
        return None
    _v, _u, change, is_init, _big, page_size, frames, pages, *_rest = _INDEX_HEADER.unpack_from(data)
    if not is_init:
        return None
    salt1, salt2 = struct.unpack(">II", data[32:40])  # copied byte for byte from the WAL header
    (backfilled,) = struct.unpack_from("=I", data, 2 * INDEX_HEADER_SIZE)  # WalCkptInfo.nBackfill follows
    return DbPosition(salt1, salt2, frames, 65536 if page_size == 1 else page_size, change, backfilled, pages)


def generation_after(a: int, b: int) -> bool:
    """Salt-1 of generation a comes after b's (SQLite adds one at every restart; mod 2**32)."""
    return a != b and (a - b) % (1 << 32) < (1 << 31)
