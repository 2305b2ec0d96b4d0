"""The `litestream replicate` child: started, relayed, restarted with backoff, stopped once.

A refresh never restarts it (credentials come from the broker). An unexpected exit is counted
and followed by a restart with the one backoff policy (reset after a minute of healthy running).
A stop reaches whatever process exists or is being started: a child spawned while the stop was
landing is signalled by the loop itself, so no daemon ever runs beside the final `-once`.

Litestream away (supervisor/litestream/walguard.py): from the moment it is fenced or found dead until the
next one answers on its control socket, the supervisor holds a read transaction on each database
(the WAL cannot restart under it); before every start, a WAL that restarted anyway (the supervisor
itself was not running) is turned into a full snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from supervisor.core.backoff import Backoff
from supervisor.core.budget import Budget
from supervisor.core.logs import get_logger
from supervisor.core.redact import secrets
from supervisor.core.state import LitestreamError, State
from supervisor.litestream import process
from supervisor.litestream.control import Control, ControlError
from supervisor.litestream.process import ProcessTable
from supervisor.litestream.walguard import WalGuard, inode

log = get_logger("child")
HEALTHY_RUN_SECONDS = 60.0
RESTART_BACKOFF = Backoff(initial_seconds=1.0, max_seconds=30.0)
READ_LOCK_POLL_SECONDS = 0.2


class ChildSupervisor:
    def __init__(self, cmd: list[str], env: dict[str, str], state: State, table: ProcessTable | None = None,
                 backoff: Backoff = RESTART_BACKOFF, guard: WalGuard | None = None,
                 control: Control | None = None) -> None:
        self.cmd = cmd
        self.env = env
        self.state = state
        self.table = table
        self.backoff = backoff
        self.guard = guard or WalGuard([])
        self.control = control
        self.stopping = asyncio.Event()
        self.proc: asyncio.subprocess.Process | None = None
        self.last_returncode: int | None = None
        self._started = asyncio.Event()
        self._done = asyncio.Event()
        self.allowed = asyncio.Event()  # cleared while fenced: no Litestream, no upload
        self.allowed.set()
        # Every start is gated on the lease confirmed within its fence window (the fence timer also
        # clears `allowed`; this closes the moment between a deadline and its timer firing).
        self.gate: Callable[[], bool] = lambda: True
        self.others: set[asyncio.subprocess.Process] = set()  # a final upload's process: fenced too
        self.reading = asyncio.Event()  # the running Litestream holds its own read lock (answered a sync)
        self.inodes: dict[str, int] = {}  # the database files the running Litestream opened
        self._restart: str | None = None

    def observe_line(self, level: str, message: str, fields: dict[str, Any]) -> None:
        """Litestream's own error lines become state: metrics, /readyz?verbose and the lag's reason.
        During an S3 outage it logs nothing for ~100 s; a full meta dir logs and keeps running."""
        if level != "error":
            return
        error = str(fields.get("error") or "")
        text = f"{message}: {error}" if error else message
        lowered = text.lower()
        kind = "disk_full" if "disk full" in lowered or "no space left" in lowered else \
            "sync" if "sync error" in lowered or "monitor error" in lowered else "other"
        named = str(fields.get("db") or fields.get("path") or "")
        db = next((d.name for d in self.guard.databases if named and (d.name == named or d.path.name == named)), "")
        self.state.litestream_errors[kind] += 1
        self.state.last_litestream_error[db] = LitestreamError(kind, secrets.redact(text)[:300], time.time())

    async def hold(self) -> None:
        """Litestream is (about to be) away: our read lock keeps the WAL from restarting."""
        self.reading.clear()
        held = await asyncio.to_thread(self.guard.hold)
        if held:
            log.debug("wal_guard_held", dbs=held)

    async def prepare(self) -> list[str]:
        """Before any Litestream starts (daemon or one-shot): under the guard, a restarted WAL is
        turned into a full snapshot."""
        await self.hold()
        return await asyncio.to_thread(self.guard.prepare)

    async def fence(self) -> None:
        """Stop uploading now: SIGKILL, not SIGTERM (SIGTERM makes Litestream upload once more)."""
        self.allowed.clear()
        await self.hold()
        for proc in (self.proc, *self.others):
            if proc is not None:
                await process.kill(proc)

    async def unfence(self) -> None:
        self.allowed.set()

    async def _wait_allowed(self) -> None:
        if self.allowed.is_set():
            return
        waits = {asyncio.ensure_future(self.allowed.wait()), asyncio.ensure_future(self.stopping.wait())}
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def wait_started(self, run_task: asyncio.Task[None]) -> None:
        """Until the first child runs; re-raises when the loop failed instead (e.g. cannot exec)."""
        started = asyncio.ensure_future(self._started.wait())
        try:
            await asyncio.wait({started, run_task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            started.cancel()
        if not self._started.is_set() and run_task.done():
            run_task.result()  # raises what ended the loop

    async def _hand_over(self, proc: asyncio.subprocess.Process, dbs: list[str]) -> None:
        """Once this Litestream has opened every database (it answers a local sync: its read lock is
        taken), the supervisor's own read lock goes."""
        if self.control is None:
            return
        pending = set(dbs)
        while pending and proc.returncode is None:
            for db in sorted(pending):
                with contextlib.suppress(ControlError, TimeoutError):
                    await self.control.stage(db, timeout_seconds=5)
                    pending.discard(db)
            if pending:
                await asyncio.sleep(READ_LOCK_POLL_SECONDS)
        if proc.returncode is None and proc is self.proc:
            self.inodes = {db.name: n for db in self.guard.databases if (n := inode(db.path)) is not None}
            await asyncio.to_thread(self.guard.release)
            self.reading.set()

    def file_changed(self, name: str, path: Path) -> bool:
        """The database's file is not the one this Litestream opened (replaced, or gone)."""
        opened = self.inodes.get(name)
        return opened is not None and opened != inode(path)

    @property
    def restarting(self) -> bool:
        return self._restart is not None

    async def restart(self, reason: str, *, kill: bool = False,
                      only: asyncio.subprocess.Process | None = None) -> None:
        """Stop the running Litestream and start another (not a death: no backoff, not counted).
        `kill`: at once, no final sync (it would wait on what the restart is meant to cut short);
        the guard holds the WAL, the next start continues from Litestream's last LTX file.
        `only`: restart that process, not one started since (its start checked the WAL already)."""
        proc = self.proc
        if proc is None or proc.returncode is not None or self.stopping.is_set() or self._restart is not None:
            return
        if only is not None and proc is not only:
            return
        self._restart = reason
        await self.hold()
        if kill:
            await process.kill(proc)
        else:
            await process.stop(proc, 10.0)

    async def run(self) -> None:
        """Keep Litestream running until stop() (or cancellation)."""
        failures = 0
        try:
            while not self.stopping.is_set():
                await self._wait_allowed()
                if self.stopping.is_set():
                    return
                if not self.gate():
                    await asyncio.sleep(0.1)  # the fence timer is about to fire: wait for its verdict
                    continue
                began = time.monotonic()
                await self.prepare()
                proc = await process.spawn(self.cmd, self.env, self.table)
                self.proc = proc
                self.state.child_running = True
                self.state.child_pid = proc.pid
                self.state.child_started_at = time.time()
                self._started.set()
                log.info("litestream_started", pid=proc.pid)
                if self.stopping.is_set():  # the stop landed while this one was being spawned
                    with contextlib.suppress(ProcessLookupError):
                        proc.send_signal(signal.SIGTERM)
                if not self.allowed.is_set():  # so did a fence: not one upload
                    await process.kill(proc)
                assert proc.stdout is not None
                relay = asyncio.create_task(process.relay(proc.stdout, log, {}, observe=self.observe_line))
                hand_over = asyncio.create_task(self._hand_over(proc, [db.name for db in self.guard.databases]))
                try:
                    rc = await proc.wait()
                    await asyncio.wait({relay}, timeout=2)
                finally:
                    relay.cancel()
                    hand_over.cancel()
                    self.state.child_running = False
                    self.last_returncode = proc.returncode
                    await self.hold()  # before anything else: the app may be writing right now
                if self.stopping.is_set():
                    log.info("litestream_exited", returncode=rc)
                    return
                if not self.allowed.is_set():
                    log.info("litestream_fenced", returncode=rc)
                    continue
                if self._restart is not None:
                    log.info("litestream_restarting", returncode=rc, reason=self._restart)
                    self._restart = None
                    continue
                failures = 1 if time.monotonic() - began > HEALTHY_RUN_SECONDS else failures + 1
                delay = self.backoff.delay(failures)
                self.state.child_restarts += 1
                log.error("litestream_died", returncode=rc, restart_in=round(delay, 1),
                          restarts=self.state.child_restarts)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), delay)
        finally:
            self._done.set()

    async def stop(self, budget: Budget, force: asyncio.Event) -> int | None:
        """SIGTERM to whatever runs (Litestream then makes its final upload), within the budget."""
        self.stopping.set()
        await self.hold()
        while not self._done.is_set() and not budget.spent and not force.is_set():
            proc = self.proc
            if proc is not None and proc.returncode is None and await process.stop(proc, budget.left(), force):
                log.error("litestream_kill", reason="second signal" if force.is_set() else "shutdown budget spent",
                          budget_seconds=budget.seconds)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._done.wait(), min(0.5, max(0.01, budget.left())))
        if self.proc is not None and self.proc.returncode is None:
            log.error("litestream_kill", reason="second signal" if force.is_set() else "shutdown budget spent",
                      budget_seconds=budget.seconds)
            await process.kill(self.proc)
        return self.proc.returncode if self.proc else None
