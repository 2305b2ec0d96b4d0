"""The sidecar through a replica outage: pause while the store is away, catch up, spread, when it returns.

seen down > LONG_OUTAGE_SECONDS -> our read lock -> every database closed in Litestream (paused)
replica answers again -> a random part of the outage (catch_up_delay) -> leases renewed
                     -> the databases reopened -> Litestream stages and uploads the backlog at once
paused PAUSE_MAX_SECONDS -> reopened anyway (our read lock must not hold the WAL for hours)

Why pause: a Litestream left running through an outage turns every sync into its own level-0 file
and uploads them file by file the moment the store answers (a 30 s outage: ~15 files per sidecar,
a herd of 50 at 5.7x the store's steady rate in the second after its return). Closed, a database's
changes wait in its WAL (held by us: it cannot restart) and the reopen stages them as one file.

A mixin: `Replicator` (supervisor/jobs/replicate.py) owns the parts named below and runs this.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Coroutine
from typing import Any

from supervisor.core.logs import get_logger
from supervisor.core.state import State
from supervisor.litestream.child import ChildSupervisor
from supervisor.litestream.config import Database, LitestreamConfig
from supervisor.litestream.control import Control, ControlError
from supervisor.replica.lag import LagProbe
from supervisor.replica.leaseholder import Lease

log = get_logger("replicate")
CATCH_UP_STOP_SECONDS = 10.0  # a close whose final upload takes longer: Litestream is restarted instead
# The first sync after the reopen waits behind the fresh uploader's first round (its listing and
# the backlog's upload): a herd of 50 on one store took over 12 s; the WAL is held meanwhile, so
# waiting is safe, and cheaper than the restart a timeout leads to.
CATCH_UP_SYNC_SECONDS = 30.0
LONG_OUTAGE_SECONDS = 3.0  # down longer: Litestream's uploader waits out its SDK's retry delay by now
PAUSE_STOP_SECONDS = 1.0  # a close during an outage: its final upload cannot succeed, so no waiting on it
# The WAL cannot be checkpointed past our read lock while paused: after this, Litestream takes the
# database back (its changes staged locally, as without a pause) and the outage goes on without us.
PAUSE_MAX_SECONDS = 120.0
# After an outage every sidecar on the store sees its return within a second (the probe looks every
# 0.5-1 s while it fails): each waits a random part of this share of the outage before its catch-up
# (at most CATCH_UP_SPREAD_MAX_SECONDS), so their backlogs do not all land in the same second.
CATCH_UP_SPREAD_SHARE = 0.15
CATCH_UP_SPREAD_MAX_SECONDS = 10.0


def catch_up_delay(down_seconds: float, rand: Callable[[float, float], float] = random.uniform) -> float:
    """Seconds to wait before catching up after `down_seconds` of outage (a pure function): up to
    CATCH_UP_SPREAD_SHARE of the outage, uniformly spread, at most CATCH_UP_SPREAD_MAX_SECONDS. A
    10 s outage adds at most 1.5 s; after a 30 s one a herd's backlogs land over 4.5 s, not one."""
    return rand(0.0, min(max(0.0, down_seconds) * CATCH_UP_SPREAD_SHARE, CATCH_UP_SPREAD_MAX_SECONDS))


class Outages:
    config: LitestreamConfig
    state: State
    probe: LagProbe
    leases: dict[str, Lease]
    child: ChildSupervisor | None
    control: Control | None
    # the Litestream process whose databases a pause closed (None: not paused); one started since
    # opened them all itself
    paused: asyncio.subprocess.Process | None
    # set when a pause ended at PAUSE_MAX_SECONDS with the store still away: no new pause until it answers
    pause_spent: bool
    reopening: asyncio.Lock  # a pause and a reopen never interleave their socket calls
    outage_tasks: set[asyncio.Task[None]]
    pause_limit: asyncio.Task[None] | None

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
        self.outage_tasks.add(task)
        task.add_done_callback(self.outage_tasks.discard)
        return task

    def cancel_outage_work(self) -> None:
        """At shutdown: no pause or reopen runs beside the final upload (which covers a paused database
        with `-once`); the probe may still call in until it is cancelled: `shutting_down` stops those."""
        self.probe.cancel_pending()
        for task in list(self.outage_tasks):
            task.cancel()

    def on_replica_failing(self, db: Database, failing_seconds: float) -> None:
        """Called by the lag probe after every failed listing, with how long this database's listings
        have failed. Every database's replica must be failing: one broken replica pauses nothing."""
        if self.paused is not None or self.pause_spent or self.state.shutting_down or self.reopening.locked():
            return
        if all(self.probe.failing_seconds(d.name) > LONG_OUTAGE_SECONDS for d in self.config.databases):
            self._spawn(self.pause(failing_seconds), "pause")

    def _same_child(self, proc: asyncio.subprocess.Process) -> bool:
        """The Litestream a pause or reopen began with still runs, may upload, and is not being stopped."""
        child = self.child
        return child is not None and child.proc is proc and proc.returncode is None and child.allowed.is_set() \
            and not child.stopping.is_set() and not child.restarting and not self.state.shutting_down

    async def pause(self, failing_seconds: float) -> None:
        async with self.reopening:
            control, child = self.control, self.child
            if control is None or child is None or self.paused is not None or not child.reading.is_set():
                return  # Litestream away already (fenced, restarting): nothing uploads
            proc = child.proc
            if proc is None or not self._same_child(proc):
                return
            await child.hold()
            try:
                unheld = await asyncio.to_thread(child.guard.unheld)
            except OSError as e:
                unheld = [str(e)]
            if unheld or not self._same_child(proc):
                self.pause_spent = True  # not again this outage: each try takes and drops the guard
                # without our read lock a closed database's WAL could restart under nobody: no pause
                if self._same_child(proc) and child.proc is proc:
                    await asyncio.to_thread(child.guard.release)
                    child.reading.set()
                log.info("pause_skipped", unheld=unheld, detail="the WAL guard does not hold every database, "
                         "or Litestream changed meanwhile: Litestream keeps running through the outage")
                return
            closed: list[str] = []
            for db in self.config.databases:
                if not self._same_child(proc):
                    break  # a Litestream started since holds its own; the reopen finds it changed
                # Litestream answers an error (its final upload failed: the store is away) and closes
                # the database all the same; whatever it did, our read lock stays and the reopen
                # (stop, start) sorts it out
                with contextlib.suppress(ControlError, TimeoutError):
                    await control.stop(db.path, PAUSE_STOP_SECONDS)
            if not self._same_child(proc):
                return  # a Litestream started since opened every database: nothing is paused
            with contextlib.suppress(ControlError, TimeoutError):
                stopped = {str(d.get("path")) for d in await control.databases()
                           if d.get("status") in ("stopped", "closed")}
                closed = [db.name for db in self.config.databases if str(db.path) in stopped]
            self.paused = proc
            self.state.uploads_paused = True
            self.state.pauses += 1
            log.info("uploads_paused", failing_seconds=round(failing_seconds, 1), closed=closed,
                     detail="the replica is away: Litestream's databases are closed (their WAL held by the "
                            "supervisor) until it answers, then the backlog goes up as one file per database")
            self.pause_limit = self._spawn(self._unpause_later(proc), "pause-limit")

    async def _unpause_later(self, proc: asyncio.subprocess.Process) -> None:
        await asyncio.sleep(PAUSE_MAX_SECONDS)
        if self.paused is proc:
            self.pause_spent = True  # until the store answers again (catch_up)
            log.info("uploads_unpaused", detail=f"still away after {PAUSE_MAX_SECONDS:g} s: Litestream takes the "
                                               "databases back and stages their changes locally")
            self.pause_limit = None  # this task: not cancelled by its own reopen
            await self.reopen(list(self.config.databases), 0.0, 0.0, after_pause=True)

    async def catch_up(self, db: Database, down_seconds: float = 0.0) -> None:
        """The replica answers again: upload now, not when Litestream's backoff lets it try again.
        After an outage of more than a few seconds its uploader is waiting out its SDK's retry
        delays (10 attempts, up to 20 s apart), or a pause closed the database: the database is
        closed and reopened through the socket (the waiting upload is cancelled; the supervisor
        holds the WAL meanwhile), and its fresh uploader sends everything pending at once.
        Litestream itself keeps running; if the reopen fails (a close whose final upload cannot
        finish, a start refused), Litestream is restarted instead: never left with the database
        closed. It all starts after a random part of the outage's length (catch_up_delay): a
        hundred sidecars back together spread their backlogs and lease renewals rather than
        landing them in the same second."""
        delay = catch_up_delay(down_seconds)
        await asyncio.sleep(delay)
        self.pause_spent = False  # the store answered: a new outage may pause again
        if self.state.shutting_down:
            return
        for lease in self.leases.values():
            lease.renew_now()  # a lease renewals failed for: confirmed now, uploads resume at once if fenced
        if self.paused is not None:
            await self.reopen(list(self.config.databases), down_seconds, delay, after_pause=True)
        elif down_seconds > LONG_OUTAGE_SECONDS:
            await self.reopen([db], down_seconds, delay)

    async def reopen(self, dbs: list[Database], down_seconds: float, delay: float, after_pause: bool = False) -> None:
        async with self.reopening:
            control, child = self.control, self.child
            if control is None or child is None or self.state.shutting_down:
                return
            if after_pause and self.paused is None:
                return  # another catch-up (or the pause's limit) reopened them meanwhile
            paused, self.paused = self.paused, None
            self.state.uploads_paused = False
            limit, self.pause_limit = self.pause_limit, None
            if limit is not None:
                limit.cancel()
            if paused is not None and paused is not child.proc:
                paused = None  # Litestream was started again since: it opened every database itself
            if paused is None and not child.reading.is_set():
                return  # Litestream away (fenced, restarting): the next one uploads everything
            proc = child.proc
            if proc is None or not self._same_child(proc):
                return
            if paused is not None:
                dbs = list(self.config.databases)
            started = time.monotonic()
            step = "hold"
            try:
                await child.hold()
                # A start through the socket continues from Litestream's last position without the
                # checks of a process start (walguard.prepare): only safe while our read lock kept
                # each WAL from restarting and the file is the one Litestream opened.
                unsafe = await asyncio.to_thread(child.guard.unheld) + [
                    d.name for d in dbs if child.inodes.get(d.name) not in (None, _inode(d))]
                if unsafe:
                    raise ControlError(f"not reopened in place: {', '.join(sorted(set(unsafe)))} unguarded or "
                                       "replaced since Litestream opened it (a restart checks the WAL first)")
                result = None
                for one in dbs:
                    if not self._same_child(proc):
                        raise ControlError("Litestream changed during the reopen")
                    step = f"stop {one.name}"
                    await control.stop(one.path, CATCH_UP_STOP_SECONDS)
                    step = f"start {one.name}"
                    await control.start(one.path, CATCH_UP_STOP_SECONDS)
                    step = f"sync {one.name}"
                    result = await control.stage(one.path, CATCH_UP_SYNC_SECONDS)
            except (ControlError, TimeoutError, OSError) as e:
                log.warning("catch_up_restart", dbs=[d.name for d in dbs], step=step, error=str(e) or "timed out",
                            detail="the database could not be reopened: Litestream is restarted (the WAL held "
                                   "meanwhile)")
                if not self.state.shutting_down:
                    await child.restart("catch up after the replica came back", kill=True)
                return
            if self._same_child(proc):
                await asyncio.to_thread(child.guard.release)
                child.reading.set()
            log.info("caught_up", dbs=[d.name for d in dbs], how="reopen", paused=paused is not None,
                     seconds=round(time.monotonic() - started, 3),
                     txid=f"{result.txid:016x}" if result is not None else None,
                     down_seconds=round(down_seconds, 1), spread_seconds=round(delay, 3))
        for one in dbs:
            await self.probe.probe(one, force=True)


def _inode(db: Database) -> int | None:
    try:
        return db.path.stat().st_ino
    except OSError:
        return None
