"""walreset.truncate on real SQLite files: the WAL ends empty with every row in the db file; a
missing db is not created; a db kept busy by the app is reported in one line naming it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from supervisor import walreset


def _app(db: Path) -> sqlite3.Connection:
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA wal_autocheckpoint=0")
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY)")
    con.executemany("INSERT INTO t VALUES (?)", ((i,) for i in range(500)))
    return con


def test_the_wal_ends_empty_and_the_rows_in_the_db_file(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    app = _app(db)  # the app keeps its connection: the WAL is not removed on close
    wal = tmp_path / "app.db-wal"
    assert wal.stat().st_size > 0
    assert walreset.truncate(db) == (True, "")
    assert wal.stat().st_size == 0
    app.close()
    ro = sqlite3.connect(f"file:{db}?mode=ro&immutable=1", uri=True)  # the db file alone, no WAL
    assert ro.execute("SELECT count(*) FROM t").fetchone()[0] == 500


def test_a_missing_db_needs_nothing_and_is_not_created(tmp_path: Path) -> None:
    assert walreset.truncate(tmp_path / "none.db") == (True, "")
    assert list(tmp_path.iterdir()) == []


def test_a_db_the_app_keeps_busy_is_reported_in_one_line(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    app = _app(db)
    reader = sqlite3.connect(db, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM t").fetchone()  # a read transaction pins the WAL
    app.execute("INSERT INTO t VALUES (1000)")
    done, why = walreset.truncate(db, busy_seconds=0.2)
    assert not done and str(db) in why and "\n" not in why
    reader.execute("COMMIT")
    assert walreset.truncate(db, busy_seconds=0.2) == (True, "")
    app.close()
    reader.close()
