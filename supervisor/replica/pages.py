"""A database's content as page digests: of a live WAL database, as of one committed state, and of
a plain file (a restored replica); and what differs between two of them.

The comparison is the LTX format's idea of a database checksum (every page but the lock page,
with its number) with BLAKE2b per page instead of CRC-64 (hashlib's C, not a Python loop: 230 MB
in well under a second), kept per page so a difference can be named by page.

The live view is read without copying and without blocking the app: inside a read transaction
(the WAL cannot restart under it, a checkpoint cannot overwrite a page it sees), every page is
the newest frame for it in the WAL up to the transaction's snapshot, else the database file's.
The snapshot is the WAL index's committed frames, read before and after the transaction begins:
when they differ, a commit landed in between and the caller tries again.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apsw

from supervisor.litestream import sqlitedb, walfile

DIGEST_SIZE = 8
CHUNK_PAGES = 256
SMALL_FOR_COUNTS = 64 << 20  # row counts per table only when that is cheap


def lock_page(page_size: int) -> int:
    """SQLite's lock page (the one at byte offset 1 GiB): never holds data, never compared."""
    return (1 << 30) // page_size + 1


def digest(page: bytes) -> bytes:
    return hashlib.blake2b(page, digest_size=DIGEST_SIZE).digest()


@dataclass(frozen=True)
class Digests:
    page_size: int
    pages: list[bytes]  # one digest per page, page 1 first (the lock page's is empty)
    counts: dict[str, int] | None = None  # rows per table, when cheap

    @property
    def page_count(self) -> int:
        return len(self.pages)

    @property
    def whole(self) -> str:
        """One digest for the whole database (reported, never compared alone)."""
        return hashlib.blake2b(b"".join(self.pages), digest_size=16).hexdigest()


def _file_pages(path: Path, page_size: int, count: int) -> Iterator[tuple[int, bytes]]:
    with open(path, "rb") as f:
        pgno = 1
        while pgno <= count:
            chunk = f.read(page_size * CHUNK_PAGES)
            if not chunk:
                return
            for i in range(0, len(chunk), page_size):
                yield pgno, chunk[i:i + page_size]
                pgno += 1


def file_page_size(path: Path) -> int:
    with open(path, "rb") as f:
        header = f.read(100)
    if header[:16] != walfile.SQLITE_HEADER:
        raise ValueError(f"{path} is not a SQLite database")
    (size,) = struct.unpack(">H", header[16:18])
    return 65536 if size == 1 else size


def of_file(path: Path, with_counts: bool = False) -> Digests:
    """A database file on its own (no WAL beside it: a restored replica)."""
    page_size = file_page_size(path)
    count = path.stat().st_size // page_size
    skip = lock_page(page_size)
    pages = [b"" if pgno == skip else digest(page) for pgno, page in _file_pages(path, page_size, count)]
    counts = None
    if with_counts:
        con = sqlitedb.connect(path)
        try:
            counts = row_counts(con)
        finally:
            con.close()
    return Digests(page_size, pages, counts)


def row_counts(con: Any) -> dict[str, int]:
    """Rows per ordinary table: a hint for a person when pages differ. Virtual tables are left out
    (their module may be the app's own, unknown to this SQLite; their pages are their shadow
    tables'), and a table that cannot be counted is only missing from the hint."""
    tables = [r[0] for r in con.execute(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND sql NOT LIKE 'CREATE VIRTUAL TABLE%' ORDER BY name")]
    counts: dict[str, int] = {}
    for table in tables:
        quoted = '"' + table.replace('"', '""') + '"'  # a name from sqlite_schema, quoted
        try:
            counts[table] = int(con.execute(f"SELECT count(*) FROM {quoted}").fetchone()[0])  # noqa: S608
        except apsw.Error:
            continue
    return counts


class Unsettled(Exception):
    """A commit landed while the snapshot was being taken: try again."""


@dataclass(frozen=True)
class LiveSnapshot:
    position: walfile.DbPosition
    digests: Digests


def _wal_frames(db: Path, position: walfile.DbPosition) -> dict[int, int]:
    """pgno -> offset of its newest page image among the committed frames of this generation."""
    frame_size = position.frame_size
    newest: dict[int, int] = {}
    offset = walfile.WAL_HEADER_SIZE
    wal = walfile.wal_path(db)
    for _ in range(position.frames):
        header = walfile.PINNED.read(wal, walfile.FRAME_HEADER_SIZE, offset)
        if header is None or len(header) < walfile.FRAME_HEADER_SIZE:
            raise Unsettled("the WAL is shorter than its index says")
        pgno, _commit, salt1, salt2 = struct.unpack(">IIII", header[:16])
        if (salt1, salt2) != (position.salt1, position.salt2):
            raise Unsettled("a frame of another WAL generation within the committed frames")
        newest[pgno] = offset + walfile.FRAME_HEADER_SIZE
        offset += frame_size
    return newest


def live(db: Path, with_counts: bool = False) -> LiveSnapshot:
    """The live database's committed state, read inside a read transaction (blocking; in a thread).
    Raises Unsettled when a commit landed while it was being taken (the caller tries again)."""
    before = walfile.read_position(db)
    if before is None:
        raise Unsettled("no WAL index: the database is not open in WAL mode")
    con = sqlitedb.connect(db, read_only=False, busy_ms=2000)
    try:
        con.config(apsw.SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1)  # our close never writes
        persist = ctypes.c_int(1)
        con.file_control("main", apsw.SQLITE_FCNTL_PERSIST_WAL, ctypes.addressof(persist))
        con.execute("BEGIN")
        con.execute("SELECT count(*) FROM sqlite_schema").fetchall()
        after = walfile.read_position(db)
        header = walfile.read_wal_header(db)
        if after is None or (before.salt1, before.salt2, before.frames, before.change) != \
                (after.salt1, after.salt2, after.frames, after.change):
            raise Unsettled("a commit landed while the snapshot began")
        if after.frames and (header is None or header.salts != (after.salt1, after.salt2)):
            raise Unsettled("the WAL header and its index disagree")
        # A WAL copied whole is ignored by SQLite's reader (read mark 0) and may restart under it:
        # read what the reader reads, the database file. Size and page count as this transaction
        # sees them (an index rebuilt over an empty WAL says 0 for both).
        newest = {} if after.backfilled >= after.frames else _wal_frames(db, after)
        page_size = int(con.execute("PRAGMA page_size").fetchone()[0])
        page_count = int(con.execute("PRAGMA page_count").fetchone()[0])
        skip, wal = lock_page(page_size), walfile.wal_path(db)
        pages = []
        for pgno in range(1, page_count + 1):
            if pgno == skip:
                pages.append(b"")
                continue
            at = newest.get(pgno)
            data = walfile.PINNED.read(wal, page_size, at) if at is not None else \
                walfile.PINNED.read(db, page_size, (pgno - 1) * page_size)
            if data is None or len(data) != page_size:
                raise Unsettled(f"page {pgno} could not be read whole")
            pages.append(digest(data))
        counts = row_counts(con) if with_counts else None
        return LiveSnapshot(after, Digests(page_size, pages, counts))
    finally:
        with contextlib.suppress(apsw.Error):
            con.execute("COMMIT")
        with contextlib.suppress(apsw.Error):
            con.close()


@dataclass(frozen=True)
class Difference:
    same: bool
    detail: str  # what differed: page counts, the first differing page, row counts when known


def compare(live_pages: Digests, replica_pages: Digests) -> Difference:
    if live_pages.page_size != replica_pages.page_size:
        return Difference(False, f"page size {live_pages.page_size} on disk, {replica_pages.page_size} in the replica")
    differing = [i + 1 for i, (a, b) in enumerate(zip(live_pages.pages, replica_pages.pages, strict=False)) if a != b]
    if not differing and live_pages.page_count == replica_pages.page_count:
        return Difference(True, f"{live_pages.page_count} pages identical ({live_pages.whole})")
    parts = [f"{live_pages.page_count} pages on disk, {replica_pages.page_count} in the replica"]
    if differing:
        parts.append(f"{len(differing)} differ, the first page {differing[0]}")
    if live_pages.counts is not None and replica_pages.counts is not None:
        rows = [f"{t}: {live_pages.counts.get(t, 0)} on disk, {replica_pages.counts.get(t, 0)} in the replica"
                for t in sorted(set(live_pages.counts) | set(replica_pages.counts))
                if live_pages.counts.get(t) != replica_pages.counts.get(t)]
        if rows:
            parts.append("rows " + "; ".join(rows))
    return Difference(False, ", ".join(parts))
