"""Lifecycle parts with faults a real part cannot produce on demand: an
unreadable meta dir, a listing that outlives its timeout, a stop landing mid-spawn (issue 11)."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from pathlib import Path

import pytest

from supervisor.core.budget import Budget
from supervisor.core.state import State
from supervisor.litestream import process
from supervisor.litestream.child import ChildSupervisor
from supervisor.litestream.config import Database, LitestreamConfig, Replica
from supervisor.replica.lag import LagProbe
from supervisor.replica.layout import RemotePosition


def _probe(tmp_path: Path, s3) -> tuple[LagProbe, Database, State]:
    db = Database(tmp_path / "app.db", Replica("b", "app", "http://127.0.0.1:1", "us-east-1", True), tmp_path / "meta")
    (db.meta_dir / "ltx" / "0").mkdir(parents=True)
    config = LitestreamConfig(tmp_path / "ls.yml", {}, (db,))
    state = State()
    return LagProbe(lambda _db: s3, lambda: True, config, state, 0.1), db, state


def test_unreadable_meta_dir_is_a_probe_error_not_a_crash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Item 13: a PermissionError reading the meta dir ended the lag probe and the sidecar."""
    probe, db, state = _probe(tmp_path, object())
    monkeypatch.setattr(probe, "_list_newer", lambda _db, _key: None)

    def denied(_db: Database, _txid: int) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("supervisor.replica.layout.local_position", denied)
    asyncio.run(probe.probe(db, force=True))
    current = state.databases[db.name]
    assert current.probe_error and "Permission denied" in current.probe_error
    assert str(db.meta_dir) in current.probe_error


def test_a_listing_that_times_out_never_moves_the_position_later(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Item 14: the abandoned thread used to move "last seen key" without recording the position."""
    release = threading.Event()
    probe, db, state = _probe(tmp_path, object())

    def slow(_db: Database, _key: str | None) -> RemotePosition:
        release.wait(5)
        return RemotePosition(9, time.time(), "app/0000/0000000000000009-0000000000000009.ltx")

    monkeypatch.setattr(probe, "_list_newer", slow)

    async def scenario() -> None:
        await probe.probe(db, force=True, timeout_seconds=0.2)
        release.set()
        await asyncio.sleep(0.3)  # the abandoned thread finishes now

    asyncio.run(scenario())
    assert state.databases[db.name].remote_txid == 0 and state.databases[db.name].probe_error
    assert probe._last_key.get(db.name) is None
    # the next listing starts from the last recorded key, and records what it finds
    monkeypatch.setattr(probe, "_list_newer", lambda _db, key: RemotePosition(9, time.time(), "k") if key is None
                        else None)
    asyncio.run(probe.probe(db, force=True))
    assert state.databases[db.name].remote_txid == 9


def test_a_stop_landing_while_litestream_is_being_spawned_reaches_the_new_process(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Item 8: a stop during a restart sent no signal; the new daemon ran beside the final -once."""
    script = tmp_path / "daemon.py"
    marker = tmp_path / "terminated"
    script.write_text("import signal, sys, time\n"
                      f"signal.signal(signal.SIGTERM, lambda *a: (open({str(marker)!r}, 'w').close(), sys.exit(0)))\n"
                      "time.sleep(60)\n")
    real_spawn = process.spawn
    spawning = asyncio.Event

    async def scenario() -> None:
        in_spawn = spawning()

        async def slow_spawn(*args, **kwargs):
            in_spawn.set()
            await asyncio.sleep(0.5)  # the stop lands here
            return await real_spawn(*args, **kwargs)

        monkeypatch.setattr(process, "spawn", slow_spawn)
        child = ChildSupervisor([sys.executable, str(script)], {}, State())
        run = asyncio.create_task(child.run())
        await in_spawn.wait()
        rc = await child.stop(Budget(10, "--shutdown-timeout"), asyncio.Event())
        await asyncio.wait_for(run, 5)
        # it got SIGTERM (before or after installing its handler), was not left running, not SIGKILLed
        assert child.proc is not None and child.proc.returncode == rc and rc in (0, -15)
        assert rc == -15 or marker.exists()

    asyncio.run(scenario())
