"""The sidecar after a replica outage: catch up, spread, when the store answers again.

replica answers again -> a random part of the outage (catch_up_delay) -> leases renewed
                     -> [outage > LONG_OUTAGE_SECONDS] the database reopened through the socket
                     -> its fresh uploader sends the backlog at once
a reopen that cannot be done in place -> Litestream restarted (its start checks the WAL first)

A mixin: `Replicator` (supervisor/jobs/replicate.py) owns the parts named below and runs this.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

from supervisor.core.logs import get_logger
from supervisor.core.state import State
from supervisor.litestream.child import ChildSupervisor
from supervisor.litestream.config import Database, LitestreamConfig
from supervisor.litestream.control import Control, ControlError, ControlRefused
from supervisor.replica.lag import LagProbe
from supervisor.replica.leaseholder import Lease

log = get_logger("replicate")
CATCH_UP_STOP_SECONDS = 10.0  # a close whose final upload takes longer: Litestream is restarted instead
# The first sync after the reopen waits behind the fresh uploader's first round (its listing and
# the backlog's upload): a herd of 50 on one store took over 12 s; the WAL is held meanwhile, so
# waiting is safe, and cheaper than the restart a timeout leads to.
CATCH_UP_SYNC_SECONDS = 30.0
LONG_OUTAGE_SECONDS = 3.0  # down longer: Litestream's uploader waits out its SDK's retry delay by now
# After an outage every sidecar on the store sees its return within a few seconds: each waits a
# random part of this share of the outage before its catch-up (at most CATCH_UP_SPREAD_MAX_SECONDS),
# so their backlogs do not all land in the same second.
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
    reopening: asyncio.Lock  # one reopen at a time

    def cancel_outage_work(self) -> None:
        """At shutdown: no catch-up runs beside the final upload; the probe may still call in until it
        is cancelled: `shutting_down` stops those."""
        self.probe.cancel_pending()

    def _same_child(self, proc: asyncio.subprocess.Process) -> bool:
        """The Litestream a reopen began with still runs, may upload, and is not being stopped."""
        child = self.child
        return child is not None and child.proc is proc and proc.returncode is None and child.allowed.is_set() \
            and not child.stopping.is_set() and not child.restarting and not self.state.shutting_down

    async def catch_up(self, db: Database, down_seconds: float = 0.0) -> None:
        """The replica answers again: upload now, not when Litestream's backoff lets it try again.
        After an outage of more than a few seconds its uploader is waiting out its SDK's retry
        delays (10 attempts, up to 20 s apart): the database is closed and reopened through the
        socket (the waiting upload is cancelled; the supervisor holds the WAL meanwhile), and its
        fresh uploader sends everything pending at once. Litestream itself keeps running; if the
        reopen fails (a close whose final upload cannot finish, a start refused), Litestream is
        restarted instead: never left with the database closed. It all starts after a random part
        of the outage's length (catch_up_delay): a hundred sidecars back together spread their
        backlogs and lease renewals rather than landing them in the same second."""
        delay = catch_up_delay(down_seconds)
        await asyncio.sleep(delay)
        if self.state.shutting_down:
            return
        for lease in self.leases.values():
            lease.renew_now()  # a lease renewals failed for: confirmed now, uploads resume at once if fenced
        if down_seconds > LONG_OUTAGE_SECONDS:
            await self.reopen(db, down_seconds, delay)

    async def reopen(self, db: Database, down_seconds: float, delay: float) -> None:
        async with self.reopening:
            control, child = self.control, self.child
            if control is None or child is None or not child.reading.is_set():
                return  # Litestream away (fenced, restarting): the next one uploads everything
            proc = child.proc
            if proc is None or not self._same_child(proc):
                return
            started = time.monotonic()
            step = "hold"
            try:
                await child.hold()
                # A start through the socket continues from Litestream's last position without the
                # checks of a process start (walguard.prepare): only safe while our read lock keeps
                # the WAL from restarting and the file is the one Litestream opened.
                unsafe = await asyncio.to_thread(child.guard.unheld)
                if child.file_changed(db.name, db.path):
                    unsafe.append(db.name)
                if unsafe:
                    raise ControlError(f"not reopened in place: {', '.join(sorted(set(unsafe)))} unguarded or "
                                       "replaced since Litestream opened it (a restart checks the WAL first)")
                if not self._same_child(proc):
                    raise ControlError("Litestream changed during the reopen")
                step = "stop"
                try:
                    await control.stop(db.path, CATCH_UP_STOP_SECONDS)
                except ControlRefused as e:
                    # An answer, not silence: Litestream (0.5.15 on) closes the database whatever
                    # its final upload did (credentials fetched too late, a store still busy); the
                    # start below opens it with a fresh uploader that sends the same backlog. Any
                    # other refusal: the start finds it open, or fails, and Litestream is restarted.
                    log.info("catch_up_stop_refused", db=db.name, error=str(e),
                             detail="Litestream answered the close with an error; opening it again")
                if not self._same_child(proc):  # fenced, restarted or stopping while it closed
                    raise ControlError("Litestream changed during the reopen")
                step = "start"
                status = await control.start(db.path, CATCH_UP_STOP_SECONDS)
                if status != "started":  # still open: its uploader is the stuck one, or a half-closed one
                    raise ControlError(f"litestream start {db.path}: {status}, not started")
                step = "sync"
                result = await control.stage(db.path, CATCH_UP_SYNC_SECONDS)
            except (ControlError, TimeoutError, OSError) as e:
                log.warning("catch_up_restart", db=db.name, step=step, error=str(e) or "timed out",
                            detail="the database could not be reopened: Litestream is restarted (the WAL held "
                                   "meanwhile)")
                if not self.state.shutting_down:
                    await child.restart("catch up after the replica came back", kill=True, only=proc)
                return
            if self._same_child(proc):
                await asyncio.to_thread(child.guard.release)
                child.reading.set()
            log.info("caught_up", db=db.name, how="reopen", seconds=round(time.monotonic() - started, 3),
                     txid=f"{result.txid:016x}", down_seconds=round(down_seconds, 1), spread_seconds=round(delay, 3))
        await self.probe.probe(db, force=True)

