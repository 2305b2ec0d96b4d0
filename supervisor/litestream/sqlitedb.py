"""Every connection the supervisor opens to a database, through a SQLite it bundles.

SQLite 3.7.0 through 3.51.2 can corrupt a WAL database when connections in different processes
checkpoint and write at the same time (fixed in 3.51.3, 2026-03-13). Debian bookworm's Python,
and so this image's, links 3.40.1; the app beside us writes the same file. So no connection here
goes through the `sqlite3` module: `apsw` wheels bundle a current SQLite (checked at import).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import apsw

from supervisor.core.errors import RestoreFailed

MIN_VERSION = (3, 51, 3)
MMAP_BYTES = 1 << 30  # address space only; SQLite maps at most the file's size


def version() -> str:
    return apsw.sqlitelibversion()


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".")[:3])


if _version_tuple(version()) < MIN_VERSION:  # a wheel built against an old system library
    raise ImportError(f"apsw links SQLite {version()}; the supervisor needs >= 3.51.3 (the WAL-reset fix)")


def uri(path: Path, **params: str) -> str:
    # as_uri() percent-encodes '?', '#' and '%': a raw f"file:{path}" opens (and creates) another file.
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return path.as_uri() + (f"?{query}" if query else "")


def connect(path: Path, *, read_only: bool = True, busy_ms: int = 0) -> Any:
    """A connection that never creates the file; read-only unless asked (the WAL index still
    needs the -shm, which read-only connections share with the app)."""
    flags = (apsw.SQLITE_OPEN_READONLY if read_only else apsw.SQLITE_OPEN_READWRITE) | apsw.SQLITE_OPEN_URI
    con = apsw.Connection(uri(path), flags=flags)
    con.set_busy_timeout(busy_ms)
    return con


def check(path: Path, pragma: str = "integrity_check") -> None:
    """PRAGMA integrity_check (or quick_check); RestoreFailed naming what is wrong."""
    try:
        con = connect(path, busy_ms=5000)
        try:
            con.execute(f"PRAGMA mmap_size={MMAP_BYTES}")  # read through a mapping: half the time on 200 MB
            rows = [r[0] for r in con.execute(f"PRAGMA {pragma}")]
        finally:
            con.close()
    except apsw.Error as e:
        raise RestoreFailed(f"{path} is not a valid SQLite database ({e})") from None
    if rows != ["ok"]:
        raise RestoreFailed(f"{path}: {pragma.replace('_', ' ')} failed: {'; '.join(rows[:3])}")
