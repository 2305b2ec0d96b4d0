"""The catch-up's reopen (supervisor/jobs/outage.py) with the child and its socket faked: faults
the bed cannot time (a guard that could not lock, a file replaced during the outage, a restart
racing the reopen). The catch-up itself runs on the bed: tests/e2e/test_catchup_reopen.py and
tests/e2e/test_socket.py."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from supervisor.core.state import State
from supervisor.jobs.outage import Outages
from supervisor.litestream.control import ControlError, ControlRefused


class FakeControl:
    def __init__(self, stop_error: BaseException | None = None, start_status: str = "started",
                 start_error: BaseException | None = None, stage_error: BaseException | None = None,
                 during_stop: Any = None) -> None:
        self.calls: list[str] = []
        self.stop_error = stop_error
        self.start_status = start_status
        self.start_error = start_error
        self.stage_error = stage_error
        self.during_stop = during_stop  # what happens to the child while its close runs

    async def stop(self, path: Path, timeout: float) -> str:
        self.calls.append("stop")
        if self.during_stop is not None:
            self.during_stop()
        if self.stop_error is not None:
            raise self.stop_error
        return "stopped"

    async def start(self, path: Path, timeout: float) -> str:
        self.calls.append("start")
        if self.start_error is not None:
            raise self.start_error
        return self.start_status

    async def stage(self, path: Path, timeout: float) -> Any:
        self.calls.append("sync")
        if self.stage_error is not None:
            raise self.stage_error
        return SimpleNamespace(txid=1)


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
        self.restarting = False
        self.restarts: list[str] = []

    def file_changed(self, name: str, path: Path) -> bool:
        return self.inodes.get(name) not in (None, path.stat().st_ino)

    async def hold(self) -> None:
        self.reading.clear()

    async def restart(self, reason: str, *, kill: bool = False, only: Any = None) -> None:
        if only is not None and self.proc is not only:
            return  # as ChildSupervisor.restart: never a Litestream started since
        self.restarts.append(reason)


class Owner(Outages):
    def __init__(self, tmp: Path, unheld: tuple[str, ...] = ()) -> None:
        path = tmp / "app.db"
        path.write_bytes(b"")
        self.db = SimpleNamespace(name="app.db", path=path)
        self.config = SimpleNamespace(databases=[self.db])  # type: ignore[assignment]
        self.state = State()
        self.leases = {}
        self.child = FakeChild(list(unheld), {"app.db": path.stat().st_ino})  # type: ignore[assignment]
        self.control = FakeControl()  # type: ignore[assignment]
        self.probe = SimpleNamespace(probe=self._probed, cancel_pending=lambda: None)  # type: ignore[assignment]
        self.reopening = asyncio.Lock()

    async def _probed(self, db: Any, force: bool = False) -> None:
        return None


def reopened(owner: Owner) -> Owner:
    asyncio.run(owner.reopen(owner.db, 30.0, 0.0))  # type: ignore[arg-type]
    return owner


def test_a_reopen_in_place_when_the_guard_holds_the_file_litestream_opened(tmp_path: Path) -> None:
    owner = reopened(Owner(tmp_path))
    assert owner.control.calls == ["stop", "start", "sync"]  # type: ignore[union-attr]
    assert owner.child.restarts == [] and owner.child.reading.is_set()  # type: ignore[union-attr]
    assert owner.child.guard.released == 1  # type: ignore[union-attr]


def test_a_database_the_guard_could_not_lock_is_not_closed_but_restarted(tmp_path: Path) -> None:
    """Hostile review: closed without our read lock, its WAL could be checkpointed and restarted
    under nobody, and a start through the socket (no WAL check) would go on from a stale position."""
    owner = reopened(Owner(tmp_path, unheld=("app.db",)))
    assert owner.control.calls == []  # type: ignore[union-attr]
    assert owner.child.restarts == ["catch up after the replica came back"]  # type: ignore[union-attr]


def test_a_file_replaced_during_the_outage_is_not_reopened_in_place(tmp_path: Path) -> None:
    """VACUUM INTO + rename while the store was away: Litestream must start over on the new file."""
    owner = Owner(tmp_path)
    fresh = tmp_path / "app.db.new"
    fresh.write_bytes(b"x")
    fresh.replace(owner.db.path)
    reopened(owner)
    assert owner.control.calls == []  # type: ignore[union-attr]
    assert owner.child.restarts == ["catch up after the replica came back"]  # type: ignore[union-attr]


def test_no_reopen_on_a_litestream_that_is_restarting_or_in_shutdown(tmp_path: Path) -> None:
    restarting = Owner(tmp_path)
    restarting.child.restarting = True  # type: ignore[union-attr]
    assert reopened(restarting).control.calls == []  # type: ignore[union-attr]
    (tmp_path / "b").mkdir()
    stopping = Owner(tmp_path / "b")
    stopping.state.shutting_down = True
    assert reopened(stopping).control.calls == [] and stopping.child.restarts == []  # type: ignore[union-attr]


def test_a_catch_up_in_shutdown_does_nothing(tmp_path: Path) -> None:
    owner = Owner(tmp_path)
    owner.state.shutting_down = True
    asyncio.run(owner.catch_up(owner.db, 30.0))  # type: ignore[arg-type]
    assert owner.control.calls == [] and owner.child.restarts == []  # type: ignore[union-attr]


def test_a_close_that_answered_with_an_error_is_opened_again_not_restarted(tmp_path: Path) -> None:
    """The herd (issue 29): after the STS outage ten sidecars restarted Litestream because its close
    answered 500 (its final upload failed with credentials fetched too late). That close had run to
    its end: a start opens the database with a fresh uploader, and Litestream keeps running."""
    owner = Owner(tmp_path)
    owner.control = FakeControl(ControlRefused("litestream stop app.db: close database: get credentials: "
                                               "request canceled"))  # type: ignore[assignment]
    reopened(owner)
    assert owner.control.calls == ["stop", "start", "sync"]  # type: ignore[union-attr]
    assert owner.child.restarts == [] and owner.child.reading.is_set()  # type: ignore[union-attr]


def test_a_close_that_did_not_answer_or_a_database_still_open_means_a_restart(tmp_path: Path) -> None:
    silent = Owner(tmp_path)
    silent.control = FakeControl(ControlError("Litestream's control socket: connection reset"))  # type: ignore[assignment]
    assert reopened(silent).control.calls == ["stop"]  # type: ignore[union-attr]
    assert silent.child.restarts == ["catch up after the replica came back"]  # type: ignore[union-attr]
    (tmp_path / "b").mkdir()
    still_open = Owner(tmp_path / "b")
    still_open.control = FakeControl(ControlRefused("litestream stop: x"), "already_running")  # type: ignore[assignment]
    assert reopened(still_open).control.calls == ["stop", "start"]  # type: ignore[union-attr]
    assert still_open.child.restarts == ["catch up after the replica came back"]  # type: ignore[union-attr]


def test_a_litestream_started_during_a_refused_close_is_neither_started_again_nor_killed(tmp_path: Path) -> None:
    """Hostile review: a fence and unfence while the close ran 10 s start a new Litestream with the
    database open; its start would answer already_running and the restart kill the new process."""
    owner = Owner(tmp_path)

    def replaced() -> None:
        owner.child.proc = SimpleNamespace(returncode=None)  # type: ignore[union-attr]

    owner.control = FakeControl(ControlRefused("litestream stop: close database: timeout"),  # type: ignore[assignment]
                                during_stop=replaced)
    reopened(owner)
    assert owner.control.calls == ["stop"]  # type: ignore[union-attr]
    assert owner.child.restarts == []  # type: ignore[union-attr]


def test_every_other_failure_of_the_reopen_restarts_litestream(tmp_path: Path) -> None:
    cases = {
        "close timed out": (FakeControl(TimeoutError()), ["stop"]),
        "start refused after a refused close": (FakeControl(ControlRefused("litestream stop: x"),
                                                            start_error=ControlRefused("database not found")),
                                                ["stop", "start"]),
        "sync refused": (FakeControl(stage_error=ControlRefused("litestream sync: x")), ["stop", "start", "sync"]),
    }
    for i, (name, (control, calls)) in enumerate(cases.items()):
        (tmp_path / str(i)).mkdir()
        owner = Owner(tmp_path / str(i))
        owner.control = control  # type: ignore[assignment]
        reopened(owner)
        assert control.calls == calls, name
        assert owner.child.restarts == ["catch up after the replica came back"], name  # type: ignore[union-attr]
