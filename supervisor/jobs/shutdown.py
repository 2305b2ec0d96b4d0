"""The sidecar's shutdown: not ready -> [--exec: stop the app] -> our read lock -> stage through the
socket -> stop Litestream (its own shutdown uploads) -> [`replicate -once` when that could not cover
everything] -> the replica must hold the final position and, restored, the same content -> leases
released. `--shutdown-timeout` bounds all of it; a second signal ends whichever phase runs.

A mixin: `Replicator` (supervisor/jobs/replicate.py) owns the parts named below and runs this.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Awaitable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from supervisor.core.budget import Budget
from supervisor.core.errors import ExitCode, SupervisorError
from supervisor.core.logs import get_logger
from supervisor.core.settings import Settings
from supervisor.core.signals import Signals
from supervisor.core.state import State
from supervisor.litestream import binary as litestream
from supervisor.litestream import process
from supervisor.litestream.child import ChildSupervisor
from supervisor.litestream.config import Database, LitestreamConfig
from supervisor.litestream.control import Control, ControlError
from supervisor.litestream.process import ProcessTable
from supervisor.replica import positions
from supervisor.replica.drills import Drills, record
from supervisor.replica.lag import LagProbe
from supervisor.replica.leaseholder import Lease
from supervisor.replica.outcome import FinalPosition, has_data, shutdown_exit_code
from supervisor.replica.verify import Verifier

if TYPE_CHECKING:
    from supervisor.core.inotify import Inotify
    from supervisor.health.server import HealthServer
    from supervisor.identity.service import CredentialService

log = get_logger("replicate")
FINAL_CHECK_BYTES_PER_SECOND = 100e6
FINAL_SETTLE_SECONDS = 3.0
T = TypeVar("T")


class Shutdown:
    settings: Settings
    signals: Signals
    config: LitestreamConfig
    state: State
    binary: str
    child_config: Path
    processes: ProcessTable
    probe: LagProbe
    leases: dict[str, Lease]
    child: ChildSupervisor | None
    control: Control | None
    verifier: Verifier | None
    drills: Drills | None
    app: asyncio.subprocess.Process | None
    tasks: dict[str, asyncio.Task[Any]]
    service: CredentialService
    health: HealthServer
    inotify: Inotify | None

    async def stop_app(self, budget: Budget) -> int | None:
        """The app's whole process group: signalled, waited for within the budget, then killed; its
        descendants too, so none commits after the final upload."""
        app = self.app
        if app is None:
            return None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(app.pid, self.signals.first or signal.SIGTERM)
        waiter = asyncio.ensure_future(process.group_gone(app))
        forcer = asyncio.ensure_future(self.signals.force.wait())
        await asyncio.wait({waiter, forcer}, timeout=budget.left(), return_when=asyncio.FIRST_COMPLETED)
        forcer.cancel()
        if not waiter.done():
            waiter.cancel()
            log.error("app_killed", reason="second signal" if self.signals.force.is_set() else "shutdown budget spent")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(app.pid, signal.SIGKILL)
            await process.group_gone(app)
        code = process.exit_code_of(app.returncode or 0)
        log.info("app_exited", exit_code=code)
        return code

    async def stage_through_socket(self, budget: Budget) -> dict[str, bool]:
        """While the daemon still holds its read lock: everything in the WAL turned into LTX files
        (its own shutdown then uploads them). {db: staged}."""
        assert self.child is not None and self.control is not None
        done: dict[str, bool] = {}
        for db in self.config.databases:
            if self.signals.force.is_set():
                break
            try:
                result = await self.until_forced(self.control.stage(db.path, max(1.0, budget.left())))
                if result is None:
                    break  # a second signal: stop at once
                done[db.name] = True
                log.info("final_sync_done", db=db.name, via="socket", status=result.status, txid=f"{result.txid:016x}")
            except (ControlError, TimeoutError) as e:
                done[db.name] = False
                log.error("final_sync_failed", db=db.name, via="socket", error=str(e) or "timed out")
        return done

    async def until_forced(self, awaitable: Awaitable[T]) -> T | None:
        """The awaitable's result, or None as soon as a second signal arrives."""
        work = asyncio.ensure_future(awaitable)
        forcer = asyncio.ensure_future(self.signals.force.wait())
        try:
            await asyncio.wait({work, forcer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            forcer.cancel()
        if not work.done():
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await work
            return None
        return work.result()

    async def sync_once(self, budget: Budget) -> bool:
        """`litestream replicate -once`, only when no daemon could do the final upload (it was dead,
        or changes landed after it stopped): it stages and uploads whatever is still only in the WAL.
        True only if it exited 0 in time: its non-zero exit means nothing was confirmed."""
        assert self.child is not None
        if not self.child.gate():
            log.error("final_sync_skipped", detail="lease not confirmed within its fence window: no upload allowed")
            return False
        await self.child.prepare()  # a Litestream start like any other
        cmd = litestream.replicate_cmd(self.binary, self.child_config, once=True)
        try:
            proc = await process.spawn(cmd, self.child.env, self.processes)
        except SupervisorError as e:
            log.error("final_sync_failed", via="once", error=str(e))
            return False
        self.child.others.add(proc)  # the fence timer kills it like the daemon
        assert proc.stdout is not None
        relay = asyncio.create_task(process.relay(proc.stdout, log, {"phase": "final_sync"}))
        waiter = asyncio.ensure_future(proc.wait())
        forcer = asyncio.ensure_future(self.signals.force.wait())
        try:
            await asyncio.wait({waiter, forcer}, timeout=budget.left(), return_when=asyncio.FIRST_COMPLETED)
        finally:
            forcer.cancel()
            if proc.returncode is None:
                log.error("final_sync_timeout" if not self.signals.force.is_set() else "final_sync_forced",
                          budget_seconds=budget.seconds)
            await process.kill(proc)
            self.child.others.discard(proc)
            await asyncio.wait({relay}, timeout=2)
            relay.cancel()
        ok = proc.returncode == 0 and waiter.done() and self.child.gate()
        log.info("final_sync_done", via="once", returncode=proc.returncode, ok=ok)
        return ok

    async def final_upload(self, budget: Budget) -> bool:
        """Everything committed reaches the replica, with no moment where nobody holds the WAL:
        our read lock first, then a sync through the socket while the daemon holds its own, then
        the daemon stops (its shutdown uploads what it staged; the replica is checked after). A
        `-once` follows only when that could not cover everything."""
        assert self.child is not None
        await self.child.hold()
        daemon_up = self.child.proc is not None and self.child.proc.returncode is None
        synced = await self.stage_through_socket(budget) if daemon_up and self.control is not None else {}
        await self.child.stop(budget, self.signals.force)
        if self.signals.force.is_set():
            return False
        late = [db.name for db in self.config.databases if positions.unstaged(db)]
        if daemon_up and synced and all(synced.values()) and not late:
            return True
        if not any(has_data(db.path) for db in self.config.databases):
            return True
        log.info("final_sync_once", dbs=late or [n for n, ok in synced.items() if not ok] or "all",
                 detail="the daemon could not upload everything (it was not running, its sync failed, or the "
                        "database changed after it)")
        return await self.sync_once(budget)

    def database(self, name: str) -> Database:
        return next(d for d in self.config.databases if d.name == name)

    async def final_content(self, final: FinalPosition, budget: Budget) -> FinalPosition:
        """The final upload, checked by content: the app has stopped (a native sidecar stops after
        it), so the database holds still; the replica is restored at the final transaction and
        compared page by page. Too large for what is left of the budget: positions only (logged)."""
        db = self.database(final.db)
        if self.verifier is None or not final.db_has_data:
            return final
        size = db.path.stat().st_size if db.path.exists() else 0
        limit = self.settings.replicate.final_verify_max_bytes
        # ~100 MB/s for the restore and the comparison together on a small node (bench: 230 MB in ~2 s)
        needed = 2.0 + 2 * size / FINAL_CHECK_BYTES_PER_SECOND
        if size > limit or needed > budget.left():
            log.warning("final_content_not_compared", db=db.name, bytes=size, limit_bytes=limit,
                        budget_left_seconds=round(budget.left(), 1),
                        detail="larger than --final-verify-max-bytes, or not enough --shutdown-timeout left: "
                               "the position check alone decides")
            return final
        lock = self.drills.lock if self.drills is not None else asyncio.Lock()
        try:
            # a drill still running (shutdown cancelled it) lets go within the budget
            if await self.until_forced(asyncio.wait_for(lock.acquire(), budget.left())) is None:
                return final  # a second signal
        except TimeoutError:
            log.warning("final_content_not_compared", db=db.name, detail="a restore drill still held the check")
            return final
        try:
            # the app has stopped: a still moment comes at once, or it is still writing (legacy
            # sidecar): then content is "not compared", within a bounded share of the budget
            outcome = await self.until_forced(self.verifier.run(
                db, budget, compare=True, settle_seconds=min(FINAL_SETTLE_SECONDS, budget.left() / 3)))
        except Exception as e:  # noqa: BLE001 (the check could not run: the positions decide, as for a large db)
            detail = str(e) if isinstance(e, SupervisorError) else f"{type(e).__name__}: {e}"
            log.warning("final_content_not_compared", db=db.name, error=detail,
                        detail="the check could not run (out of time, S3 away, scratch short); the position "
                               "check alone decides")
            return final
        finally:
            lock.release()
        if outcome is None:
            return final
        if self.drills is not None:
            record(self.state.verify[db.name], outcome)
        if outcome.ok and outcome.compared:
            log.info("final_content_verified", db=db.name, txid=f"{outcome.txid or 0:016x}",
                     seconds=round(outcome.seconds, 2), detail=outcome.detail)
            return final
        if outcome.result == "not_compared":
            log.warning("final_content_not_compared", db=db.name, detail=outcome.detail)
            return final
        log.error("final_content_differs", db=db.name, result=outcome.result, detail=outcome.detail)
        return replace(final, content_problem=f"{outcome.result}: {outcome.detail}")

    async def shutdown(self, reason: str) -> int:
        """not ready -> app -> our read lock -> stage -> stop Litestream -> [-once] -> verify,
        all within --shutdown-timeout."""
        self.state.shutting_down = True
        budget = Budget(self.settings.replicate.shutdown_timeout_seconds, "--shutdown-timeout")
        log.info("shutdown_started", reason=reason, budget_seconds=budget.seconds)
        app_code = await self.stop_app(budget)
        for name in ("lag-probe", "drills"):  # a drill never holds the final check back
            task = self.tasks.get(name)
            if task:
                task.cancel()
        lost = any(lease.state.lost for lease in self.leases.values())
        if lost and self.child is not None:
            await self.child.fence()  # no final upload: the replica is another pod's now
        finals: list[FinalPosition] = []
        rc: int | None = None
        if self.child is not None and not self.signals.force.is_set() and not lost:
            # Only while this pod provably holds every lease may it upload once more: a lease not
            # confirmed lately (an outage just ended) gets one renewal to prove it first, by the one
            # renewer; the fence timer keeps running and kills the final upload too.
            for lease in self.leases.values():
                await self.until_forced(lease.confirm(budget.sub(min(5.0, budget.left()))))
            fenced = [name for name, lease in self.leases.items() if not lease.may_upload()]
            if fenced:
                log.error("final_sync_skipped", dbs=fenced, detail="lease not confirmed: no upload allowed")
                await self.child.fence()
            uploaded = not fenced and await self.final_upload(budget)
            rc = self.child.last_returncode
            finals = await self.probe.final_positions(budget, uploaded, self.signals.force)
            if finals and all(f.confirmed for f in finals) and not self.signals.force.is_set():
                finals = [await self.final_content(f, budget) for f in finals]
                # the last word: nothing committed since that no LTX file covers (an app still writing)
                finals = [replace(f, unstaged=positions.unstaged(self.database(f.db))) for f in finals]
        elif self.child is not None:
            rc = await self.child.stop(budget, self.signals.force)
        forced = self.signals.force.is_set()
        for final in finals:
            if final.confirmed:
                log.info("final_position_confirmed", db=final.db, txid=f"{final.local_txid:016x}")
            else:
                log.error("final_position_unconfirmed", db=final.db, local_txid=f"{final.local_txid:016x}",
                          remote_txid=f"{final.remote_txid:016x}" if final.remote_txid is not None else None,
                          detail=final.reason)
        if forced:
            log.error("forced_stop", detail="second signal: final upload not awaited")
        lost = any(lease.state.lost for lease in self.leases.values())
        for name in self.leases:
            task = self.tasks.get(f"lease:{name}")
            if task:
                task.cancel()
        if finals and all(f.confirmed for f in finals) and not forced and not lost:
            # the successor may restore right now, not after a TTL: all at once, at most 2 s past
            # the budget (one S3 request; the grace period keeps that margin over --shutdown-timeout)
            release = Budget(max(2.0, budget.left()), "--shutdown-timeout")
            await asyncio.gather(*(lease.release(release) for lease in self.leases.values()))
        code = shutdown_exit_code(finals, forced=forced, task_failed=reason.startswith("task"), app_code=app_code,
                                  extra=int(ExitCode.LEASE_LOST) if lost else None)
        log.info("shutdown_done", litestream_returncode=rc, exit_code=code)
        return code

    async def close(self) -> None:
        """Whatever the way out: every task and process ended, the endpoints and inotify closed."""
        for task in self.tasks.values():
            task.cancel()
        for task in self.tasks.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.child is not None and self.child.proc is not None:
            await process.kill(self.child.proc)
        await self.service.close()
        await self.health.close()
        if self.inotify is not None:
            self.inotify.close()
