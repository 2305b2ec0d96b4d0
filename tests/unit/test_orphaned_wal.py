"""A 0-byte database beside a WAL holding pages: restore refuses it (exit 13), because SQLite
deletes such a WAL when it opens the database, and the pages in it with it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import apsw

from supervisor.replica.localdb import local_kind, orphaned_wal


def wal_db_killed(db: Path) -> None:
    """Rows committed in WAL mode by a process killed before any checkpoint: all in the -wal."""
    code = ("import apsw, os, sys\n"
            "c = apsw.Connection(sys.argv[1]); c.execute('pragma journal_mode=wal')\n"
            "c.execute('create table t(x)'); c.execute('insert into t values (1), (2), (3)')\n"
            "os._exit(0)\n")
    subprocess.run([sys.executable, "-c", code, str(db)], check=True)


def test_a_truncated_database_beside_its_wal_is_refused_and_named(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    wal_db_killed(db)
    assert orphaned_wal(db, db.stat().st_size) is None  # a whole database: nothing to say
    db.write_bytes(b"")
    kind, size = local_kind(db)
    assert (kind, size) == ("not_sqlite", 0)
    message = orphaned_wal(db, size)
    assert message is not None and str(db) in message and "app.db-wal" in message and "\n" not in message


def test_sqlite_really_deletes_a_wal_beside_a_zero_byte_database(tmp_path: Path) -> None:
    """Why it is refused, not left to the app: the first connection throws the pages away."""
    db = tmp_path / "app.db"
    wal_db_killed(db)
    db.write_bytes(b"")
    wal = db.with_name("app.db-wal")
    assert wal.stat().st_size > 32
    conn = apsw.Connection(str(db))
    assert list(conn.execute("select count(*) from sqlite_master")) == [(0,)]
    conn.close()
    assert not wal.exists() or wal.stat().st_size == 0


def test_an_empty_wal_or_none_is_not_an_orphan(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    db.write_bytes(b"")
    assert orphaned_wal(db, 0) is None
    db.with_name("app.db-wal").write_bytes(b"")
    assert orphaned_wal(db, 0) is None
