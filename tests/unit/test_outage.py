"""The outage pause's decisions (supervisor/jobs/outage.py) with the child and its socket faked:
faults the bed cannot time (a guard that could not lock, a file replaced while paused, a restart
racing the pause). The behaviour itself is tested on the bed: tests/e2e/test_outage_pause.py."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from supervisor.core.state import DatabaseState, State
from supervisor.jobs.outage import Outages


class FakeControl:
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def stop(self, path: Path, timeout: float) -> str:
        self.calls.append(f"stop {Path(path).name}")
        return "stopped"

    async def start(self, path: Path, timeout: float) -> str:
        self.calls.append(f"start {Path(path).name}")
        return "started"

    async def stage(self, path: Path, timeout: float) -> Any:
        self.calls.append(f"sync {Path(path).name}")
        return SimpleNamespace(txid=1)

    async def databases(self) -> list[dict[str, str]]:
        return [{"path": "x", "status": "stopped"}]


class FakeGuard:
    def __init__(self, unheld: list[str]) -> None:
        self._unheld = unheld
        self.released = 0

    def unheld(self) -> list[str]:
        return list(self._unheld)

    def release(self) -> None:
        self.released += 1


class FakeChild:
    def __init__(self, unheld: list[str], inodes: dict[str, int]) -> None:
        self.proc = SimpleNamespace(returncode=None)
        self.guard = FakeGuard(unheld)
        self.inodes = inodes
        self.reading = asyncio.Event()
        self.reading.set()
        self.allowed = asyncio.Event()
        self.allowed.set()
        self.stopping = asyncio.Event()
        self.restarts: list[str] = []
        self.restarting = False

    async def hold(self) -> None:
        self.reading.clear()

    async def restart(self, reason: str, *, kill: bool = False) -> None:
        self.restarts.append(reason)


class Owner(Outages):
    def __init__(self, tmp: Path, names: tuple[str, ...] = ("app.db",), unheld: tuple[str, ...] = ()) -> None:
        self.dbs = []
        inodes = {}
        for name in names:
            path = tmp / name
            path.write_bytes(b"")
            inodes[name] = path.stat().st_ino
            self.dbs.append(SimpleNamespace(name=name, path=path))
        self.config = SimpleNamespace(databases=self.dbs)  # type: ignore[assignment]
        self.state = State()
        for db in self.dbs:
            self.state.databases[db.name] = DatabaseState(db.name, probe_error="S3 unreachable")
        self.leases = {}
        self.child = FakeChild(list(unheld), inodes)  # type: ignore[assignment]
        self.control = FakeControl()  # type: ignore[assignment]
        self.failing = {name: 30.0 for name in names}
        self.probe = SimpleNamespace(probe=self._probed, cancel_pending=lambda: None,  # type: ignore[assignment]
                                     failing_seconds=lambda name: self.failing[name])
        self.paused = None
        self.pause_spent = False
        self.reopening = asyncio.Lock()
        self.outage_tasks = set()
        self.pause_limit = None

    async def _probed(self, db: Any, force: bool = False) -> None:
        return None


def test_a_pause_needs_every_replica_failing_for_a_while_and_none_after_the_limit_or_in_shutdown(
        tmp_path: Path) -> None:
    async def scenario() -> list[bool]:
        seen = []
        owner = Owner(tmp_path, ("a.db", "b.db"))
        owner.failing["b.db"] = 0.0  # one replica broken, the other fine
        owner.on_replica_failing(owner.dbs[0], 30.0)
        seen.append(bool(owner.outage_tasks))
        owner.failing["b.db"] = 2.0  # a blip on the other: two listings within 3 s
        owner.on_replica_failing(owner.dbs[0], 30.0)
        seen.append(bool(owner.outage_tasks))
        owner.failing["b.db"] = 30.0
        owner.pause_spent = True  # the 120 s limit ended a pause; the store has not answered since
        owner.on_replica_failing(owner.dbs[0], 30.0)
        seen.append(bool(owner.outage_tasks))
        owner.pause_spent, owner.state.shutting_down = False, True
        owner.on_replica_failing(owner.dbs[0], 30.0)
        seen.append(bool(owner.outage_tasks))
        owner.state.shutting_down = False
        owner.on_replica_failing(owner.dbs[0], 30.0)
        seen.append(bool(owner.outage_tasks))
        await asyncio.gather(*owner.outage_tasks)
        seen.append(owner.paused is owner.child.proc)  # type: ignore[union-attr]
        for task in owner.outage_tasks:
            task.cancel()
        return seen

    assert asyncio.run(scenario()) == [False, False, False, False, True, True]


def test_no_pause_when_the_guard_does_not_hold_every_database(tmp_path: Path) -> None:
    """Review finding: a database the guard could not lock, closed in Litestream, could have its
    WAL checkpointed and restarted under nobody."""
    async def scenario() -> Owner:
        owner = Owner(tmp_path, unheld=("app.db",))
        await owner.pause(30.0)
        return owner

    owner = asyncio.run(scenario())
    assert owner.paused is None and owner.control.calls == []  # type: ignore[union-attr]
    assert owner.child.reading.is_set() and owner.child.guard.released == 1  # type: ignore[union-attr]


def test_a_reopen_in_place_only_for_the_file_litestream_opened(tmp_path: Path) -> None:
    """Review finding: a start through the socket skips the WAL check of a process start; a file
    replaced during the pause (VACUUM INTO + rename) would go on from the old file's position."""
    async def scenario(replace: bool) -> Owner:
        owner = Owner(tmp_path / str(replace))
        await owner.pause(30.0)
        if replace:
            fresh = owner.dbs[0].path.with_suffix(".new")
            fresh.write_bytes(b"x")
            fresh.replace(owner.dbs[0].path)
        await owner.reopen(owner.dbs, 30.0, 0.0)
        for task in owner.outage_tasks:
            task.cancel()
        return owner

    (tmp_path / "True").mkdir()
    (tmp_path / "False").mkdir()
    kept = asyncio.run(scenario(False))
    assert kept.control.calls == ["stop app.db", "stop app.db", "start app.db", "sync app.db"]  # type: ignore[union-attr]
    assert kept.child.restarts == [] and kept.child.reading.is_set()  # type: ignore[union-attr]
    replaced = asyncio.run(scenario(True))
    assert "start app.db" not in replaced.control.calls  # type: ignore[union-attr]
    assert replaced.child.restarts == ["catch up after the replica came back"]  # type: ignore[union-attr]
    assert not replaced.child.reading.is_set() and replaced.paused is None  # type: ignore[union-attr]


def test_a_pause_that_races_a_litestream_restart_closes_nothing_in_the_new_one(tmp_path: Path) -> None:
    async def scenario() -> Owner:
        owner = Owner(tmp_path, ("a.db", "b.db"))
        control = owner.control
        original = control.stop  # type: ignore[union-attr]

        async def stop_then_restart(path: Path, timeout: float) -> str:
            answer = await original(path, timeout)
            owner.child.proc = SimpleNamespace(returncode=None)  # type: ignore[union-attr]  # B started
            return answer

        control.stop = stop_then_restart  # type: ignore[union-attr,method-assign]
        await owner.pause(30.0)
        await owner.reopen(owner.dbs, 30.0, 0.0)
        for task in owner.outage_tasks:
            task.cancel()
        return owner

    owner = asyncio.run(scenario())
    assert owner.control.calls == ["stop a.db"]  # type: ignore[union-attr]  # b.db left to Litestream B
