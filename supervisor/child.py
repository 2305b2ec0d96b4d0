"""The `litestream replicate` child: started, relayed, restarted with backoff, stopped once.

A refresh never restarts it (credentials come from the broker). An unexpected exit is counted
and followed by a restart with the one backoff policy (reset after a minute of healthy running).
A stop reaches whatever process exists or is being started: a child spawned while the stop was
landing is signalled by the loop itself, so no daemon ever runs beside the final `-once`.

Litestream away: while none holds its read lock (it died, was fenced, or a previous sidecar
instance stopped while the app kept writing) SQLite may checkpoint frames it never saw; before the
next one starts, the WAL is emptied (supervisor/walreset.py) so that Litestream snapshots.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable

from supervisor import process
from supervisor.backoff import Backoff
from supervisor.budget import Budget
from supervisor.logs import get_logger
from supervisor.process import ProcessTable
from supervisor.state import State

log = get_logger("child")
HEALTHY_RUN_SECONDS = 60.0
RESTART_BACKOFF = Backoff(initial_seconds=1.0, max_seconds=30.0)


class ChildSupervisor:
    def __init__(self, cmd: list[str], env: dict[str, str], state: State, table: ProcessTable | None = None,
                 backoff: Backoff = RESTART_BACKOFF, reset_wal: Callable[[], Awaitable[bool]] | None = None,
                 needs_snapshot: bool = False) -> None:
        self.cmd = cmd
        self.reset_wal = reset_wal
        self.env = env
        self.state = state
        self.table = table
        self.backoff = backoff
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
        # No Litestream held the read lock for a while (see the module docstring): the WAL must be
        # emptied before the next daemon, or the final `-once`, runs.
        self.needs_snapshot = needs_snapshot

    async def fence(self) -> None:
        """Stop uploading now: SIGKILL, not SIGTERM (SIGTERM makes Litestream upload once more)."""
        self.allowed.clear()
        self.needs_snapshot = True
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
                if self.needs_snapshot and not await self.catch_up():
                    failures += 1
                    delay = self.backoff.delay(failures)
                    log.error("litestream_held_back", retry_in=round(delay, 1),
                              detail="Litestream stays stopped until the WAL could be emptied")
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self.stopping.wait(), delay)
                    continue
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
                relay = asyncio.create_task(process.relay(proc.stdout, log, {}))
                try:
                    rc = await proc.wait()
                    await asyncio.wait({relay}, timeout=2)
                finally:
                    relay.cancel()
                    self.state.child_running = False
                    self.last_returncode = proc.returncode
                if self.stopping.is_set():
                    log.info("litestream_exited", returncode=rc)
                    return
                if not self.allowed.is_set():
                    log.info("litestream_fenced", returncode=rc)
                    continue
                self.needs_snapshot = True
                failures = 1 if time.monotonic() - began > HEALTHY_RUN_SECONDS else failures + 1
                delay = self.backoff.delay(failures)
                self.state.child_restarts += 1
                log.error("litestream_died", returncode=rc, restart_in=round(delay, 1),
                          restarts=self.state.child_restarts)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), delay)
        finally:
            self._done.set()

    async def catch_up(self) -> bool:
        """Empty the WAL(s) so the next Litestream snapshots; True when done or not needed."""
        if self.reset_wal is None or await self.reset_wal():
            self.needs_snapshot = False
            return True
        return False

    async def stop(self, budget: Budget, force: asyncio.Event) -> int | None:
        """SIGTERM to whatever runs (Litestream then makes its final upload), within the budget."""
        self.stopping.set()
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
