"""Whatever goes wrong inside a restore drill or the final content check (an app's own virtual
table module, a database recreated mid-drill) is that check's outcome, never the sidecar's end.
Each test failed on f9608c2 (found by a hostile review)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import apsw
import pytest

from supervisor.core.budget import Budget
from supervisor.core.state import State
from supervisor.jobs.replicate import Replicator
from supervisor.litestream.config import Database, Replica
from supervisor.replica import layout as replicas
from supervisor.replica import verify
from supervisor.replica.drills import Drills
from supervisor.replica.outcome import FinalPosition
from supervisor.replica.verify import Verifier


class _Source:
    """A virtual-table module only the app's process has (sqlite-vec's vec0, an FTS5 tokenizer of
    its own, a module the app registers): the supervisor's SQLite does not know it."""

    def Create(self, _db: Any, _module: str, _dbname: str, _table: str, *_args: Any) -> tuple[str, Any]:  # noqa: N802 (apsw's names)
        return "CREATE TABLE x(a)", _Table()

    Connect = Create


class _Table:
    def BestIndex(self, *_: Any) -> None:  # noqa: N802 (apsw's names)
        return None

    def Open(self) -> Any:  # noqa: N802 (apsw's names)
        return _Cursor()

    def Disconnect(self) -> None:  # noqa: N802 (apsw's names)
        pass

    Destroy = Disconnect


class _Cursor:
    def Filter(self, *_: Any) -> None:  # noqa: N802 (apsw's names)
        pass

    def Eof(self) -> bool:  # noqa: N802 (apsw's names)
        return True

    def Close(self) -> None:  # noqa: N802 (apsw's names)
        pass


def _app_db(tmp_path: Path) -> tuple[Database, Any]:
    """A small WAL database with one table of the app's own module; the app's connection stays open."""
    path = tmp_path / "app.db"
    app = apsw.Connection(str(path))
    app.execute("PRAGMA journal_mode=WAL")
    app.create_module("appmod", _Source())
    app.execute("CREATE TABLE rows(x)")
    app.execute("CREATE VIRTUAL TABLE embeddings USING appmod()")
    app.execute("INSERT INTO rows VALUES (1)")
    db = Database(path, Replica("b", "app", "http://127.0.0.1:1", "us-east-1", True), tmp_path / "meta")
    return db, app


def _verifier(monkeypatch: pytest.MonkeyPatch) -> Verifier:
    async def fake_inspect(*_: Any) -> replicas.Layout:
        return replicas.Layout("ltx", 1, 1, None, 1)

    monkeypatch.setattr(verify, "inspect_replica", fake_inspect)
    return Verifier(None, "litestream", Path("/x.yml"), None)  # type: ignore[arg-type]


def test_a_drill_on_a_db_with_a_virtual_table_of_the_apps_module_does_not_kill_the_sidecar(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """FINDING: Drills.drill catches only SupervisorError. pages.live() counts rows of every table in
    sqlite_schema (databases <= 64 MB), virtual tables included; one whose module the supervisor's
    SQLite lacks raises apsw.SQLError ("no such module"), which escapes the drill, ends the `drills`
    root task, and main_loop shuts the whole sidecar down ("task drills exited", exit 1; with --exec
    the app is stopped too) at every --verify-interval. The drill must record a failure instead."""
    db, app = _app_db(tmp_path)
    try:
        state = State()
        drills = Drills(_verifier(monkeypatch), [db], state, 2.0)
        asyncio.run(drills.drill(db))  # raised apsw.SQLError before
        assert state.verify[db.name].last_result is not None
        assert "no such module" not in (state.verify[db.name].last_detail or "")  # counted around it
    finally:
        app.close()


def _replicator(db: Database, drills: Any, verifier: Any, shutdown_seconds: float) -> Replicator:
    r = object.__new__(Replicator)
    r.settings = SimpleNamespace(replicate=SimpleNamespace(final_verify_max_bytes=512 << 20,
                                                           shutdown_timeout_seconds=shutdown_seconds))
    r.config = SimpleNamespace(databases=(db,))
    r.signals = SimpleNamespace(force=asyncio.Event(), stop=asyncio.Event(), first=None)
    r.verifier = verifier
    r.drills = drills
    r.state = State()
    return r


def test_the_final_content_check_on_such_a_db_does_not_crash_shutdown(monkeypatch: pytest.MonkeyPatch,
                                                                    tmp_path: Path) -> None:
    """FINDING: Replicator.final_content catches only SupervisorError: the same apsw.SQLError escapes
    shutdown() after the final upload, so the sidecar dies with a traceback (exit 1) instead of
    exiting 0, and the lease is never released (the next pod's restore waits out its TTL)."""
    db, app = _app_db(tmp_path)
    try:
        final = FinalPosition(db.name, 1, 1, True, True)

        async def scenario() -> FinalPosition:
            r = _replicator(db, None, _verifier(monkeypatch), 30.0)
            return await r.final_content(final, Budget(20.0, "--shutdown-timeout"))

        result = asyncio.run(scenario())  # raises apsw.SQLError today
        assert isinstance(result, FinalPosition)
    finally:
        app.close()


def test_a_drill_while_the_app_recreates_its_db_does_not_kill_the_sidecar(monkeypatch: pytest.MonkeyPatch,
                                                                        tmp_path: Path) -> None:
    """FINDING (same class): a database deleted and recreated is supported (watch_files waits for the
    new file), but a drill that starts in between dies on Verifier.settle's `db.path.stat()`
    (FileNotFoundError, not a SupervisorError): the drills task ends and the sidecar shuts down."""
    db = Database(tmp_path / "app.db", Replica("b", "app", "http://127.0.0.1:1", "us-east-1", True), tmp_path / "m")
    state = State()
    drills = Drills(_verifier(monkeypatch), [db], state, 2.0)
    asyncio.run(drills.drill(db))  # raises FileNotFoundError today
    assert state.verify[db.name].last_result is not None


def test_scratch_files_of_a_drill_killed_midway_are_removed_at_start(tmp_path: Path) -> None:
    db = Database(tmp_path / "app.db", Replica("b", "app", "http://127.0.0.1:1", "us-east-1", True), tmp_path / "m")
    db.path.write_bytes(b"x")
    left = [tmp_path / ".app.db.verify-0a1b2c3d", tmp_path / ".app.db.verify-0a1b2c3d-wal"]
    keep = [tmp_path / ".other.db.verify-0a1b2c3d", tmp_path / "app.db-wal"]
    for f in left + keep:
        f.write_bytes(b"half a restore")
    drills = Drills(Verifier(None, "litestream", Path("/x.yml"), None), [db], State(), 2.0)  # type: ignore[arg-type]
    drills.remove_leftovers()
    assert not any(f.exists() for f in left)
    assert all(f.exists() for f in keep) and db.path.exists()
