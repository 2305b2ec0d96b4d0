"""`replicate`: the sidecar's lifecycle, top to bottom.

startup:   health server (not ready) -> broker -> first credentials (waits while STS is down)
           -> [--exec: restore] -> keeper + token watcher -> Litestream -> lag probe -> ready
main loop: until a signal, or a root task exits unexpectedly (or, with --exec, the app exits)
shutdown:  not ready -> [--exec: stop the app] -> one SIGTERM to Litestream -> wait
           -> `replicate -once` catch-up -> verify the replica holds the final local position
           -> stop the endpoints. `--shutdown-timeout` bounds all of it together; a second
           signal ends whichever phase is running at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from supervisor import config as lsconfig
from supervisor import inspection, litestream, ondisk, positions, process
from supervisor.budget import Budget
from supervisor.child import ChildSupervisor
from supervisor.config import Database
from supervisor.control import Control, ControlError
from supervisor.drills import Drills, record
from supervisor.errors import CredentialsRefused, ExitCode, LeaseLost, SupervisorError, TokenError
from supervisor.health import HealthServer
from supervisor.inotify import Inotify
from supervisor.lag import LagProbe
from supervisor.leaseholder import Lease, leases_for
from supervisor.logs import get_logger
from supervisor.outcome import FinalPosition, has_data, shutdown_exit_code
from supervisor.process import ProcessTable, become_subreaper
from supervisor.reaper import reap_orphans
from supervisor.service import CredentialService
from supervisor.settings import Settings
from supervisor.signals import Signals
from supervisor.startup import release_memory
from supervisor.state import State
from supervisor.verify import Verifier
from supervisor.walguard import WalGuard

log = get_logger("replicate")
FOREVER = 10 * 365 * 24 * 3600.0
FINAL_CHECK_BYTES_PER_SECOND = 100e6
FINAL_SETTLE_SECONDS = 3.0
CATCH_UP_STOP_SECONDS = 10.0  # a close whose final upload takes longer: Litestream is restarted instead
LONG_OUTAGE_SECONDS = 3.0  # down longer: Litestream's uploader waits out its SDK's retry delay by now
RELEASE_AFTER_SECONDS = 5.0
# After an outage every sidecar on the store sees its return within a second (the probe looks every
# 0.5-1 s while it fails): each waits a random part of this share of the outage before its catch-up
# (at most CATCH_UP_SPREAD_MAX_SECONDS), so their backlogs do not all land in the same second.
CATCH_UP_SPREAD_SHARE = 0.15
CATCH_UP_SPREAD_MAX_SECONDS = 10.0
T = TypeVar("T")


async def first_credentials(service: CredentialService, stop: asyncio.Event) -> bool:
    """Wait for credentials (STS down or token refused: keep trying, not ready). False if stopped."""
    attempt = 0
    while not stop.is_set():
        obtain = asyncio.create_task(service.keeper.obtain(Budget(FOREVER)))
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({obtain, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if obtain not in done:
            obtain.cancel()
            with contextlib.suppress(asyncio.CancelledError, SupervisorError):
                await obtain
            return False
        try:
            obtain.result()
            return True
        except (CredentialsRefused, TokenError) as e:
            attempt += 1
            delay = service.keeper.backoff.delay(attempt)
            log.error("credentials_refused", error=str(e), retry_in=round(delay, 1),
                      detail="not ready; retrying (a rotated token is picked up)")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
    return False


class Replicator:
    def __init__(self, settings: Settings, signals: Signals) -> None:
        self.settings = settings
        self.signals = signals
        self.config = lsconfig.load_for(settings)
        self.binary = litestream.resolve(settings.litestream)
        self.state = State()
        self.health = HealthServer(self.state, settings.replicate.max_lag_seconds)
        self.service = CredentialService(settings, self.state, self.config)
        # one inotify instance for the process (they are limited per user on a node): the token
        # watch and the lag probe's idle waits share it; None: both poll
        self.inotify = Inotify.open()
        self.probe = LagProbe(self.service.s3, lambda: self.service.keeper.current is not None, self.config,
                              self.state, settings.replicate.lag_interval_seconds, on_recovered=self.catch_up,
                              inotify=self.inotify)
        self.processes = ProcessTable()
        self.leases = leases_for(settings, list(self.config.databases), self.service.s3, self.state,
                                 settings.adopt_replica_from)
        self.child: ChildSupervisor | None = None
        self.control: Control | None = None
        self.verifier: Verifier | None = None
        self.drills: Drills | None = None
        self.restoring = False
        self.child_config = Path()
        self.app: asyncio.subprocess.Process | None = None
        self.tasks: dict[str, asyncio.Task[Any]] = {}

    async def startup(self) -> bool:
        host, port = self.settings.replicate.health_addr
        await self.health.start(host, port)
        self.service.address = await self.service.broker.start()
        if not await first_credentials(self.service, self.signals.stop):
            return False
        self.service.start_background(inotify=self.inotify)
        self.child_config = self.service.child_config(socket=True)
        self.control = Control(self.service.socket_path)
        self.child = ChildSupervisor(
            litestream.replicate_cmd(self.binary, self.child_config), self.service.child_environment(), self.state,
            self.processes, guard=WalGuard(list(self.config.databases), disabled=self.settings.environment.get(
                "_LITESTREAM_SUPERVISOR_TEST_NO_WAL_GUARD") == "1"), control=self.control)
        self.verifier = Verifier(self.service, self.binary, self.child_config, self.settings.verify.scratch_dir,
                                 self.control, gentle=True)
        await self.child.hold()  # until Litestream holds its own: the app may be writing already
        if self.settings.replicate.exec_command:
            self.restoring = True
            from supervisor import restore as restorer  # --exec only: the sidecar need not load it

            await restorer.restore(self.service, self.binary, list(self.config.databases),
                                   Budget(self.settings.timeout_seconds), require_replica=False, leases=self.leases,
                                   if_local_behind=self.settings.if_local_behind)
            self.restoring = False
            for name, lease in self.leases.items():
                self.keep_lease(name, lease)
        else:
            for name, lease in self.leases.items():  # adopts its own pod's restore's lease, or waits (not ready)
                await lease.acquire(Budget(FOREVER, "--timeout"))
                self.keep_lease(name, lease)  # now, not after the others: waiting for one must not expire another
        if not self.settings.replicate.exec_command:  # restore checked already with --exec
            for db in self.config.databases:
                lease = self.leases.get(db.name)
                newest = await inspection.check_before_replicating(self.service, db, Budget(FOREVER, "--timeout"),
                                                                   self.settings.if_local_behind,
                                                                   lease.replica_txid if lease else 0)
                self.probe.seed(db, newest)
        if os.getpid() == 1 or (self.settings.replicate.exec_command and become_subreaper()):
            # PID 1, or the app's subreaper: orphans are ours to reap (never a process we started)
            self.tasks["reaper"] = asyncio.create_task(reap_orphans(self.processes), name="reaper")
        self.child.gate = lambda: all(lease.may_upload() for lease in self.leases.values())
        self.tasks["litestream"] = asyncio.create_task(self.child.run(), name="litestream")
        await self.child.wait_started(self.tasks["litestream"])
        self.probe.on_round = self.check_files
        self.tasks["lag-probe"] = asyncio.create_task(self.probe.run(), name="lag-probe")
        if self.settings.replicate.verify_interval_seconds > 0:
            self.drills = Drills(self.verifier, list(self.config.databases), self.state,
                                 self.settings.replicate.verify_interval_seconds)
            self.tasks["drills"] = asyncio.create_task(self.drills.run(), name="drills")
        if self.settings.replicate.exec_command:
            cmd = self.settings.replicate.exec_command
            self.processes.spawning += 1
            try:
                # its own process group: at shutdown the whole group is stopped and waited for, so no
                # descendant of the app commits after the final upload
                self.app = await asyncio.create_subprocess_exec(*cmd, start_new_session=True)
            except OSError as e:
                raise SupervisorError(f"--exec: cannot run {cmd[0]}: {e.strerror or e}",
                                      exit_code=ExitCode.USAGE) from None
            finally:
                self.processes.spawning -= 1
            self.processes.pids.add(self.app.pid)
            log.info("app_started", command=cmd[0], pid=self.app.pid)
            self.tasks["app"] = asyncio.create_task(self.app.wait(), name="app")
        self.state.started = True
        log.info("ready", databases=[str(db.path) for db in self.config.databases])
        # once the first probe and the hand-over are done, what start-up freed goes back to the kernel
        asyncio.get_running_loop().call_later(RELEASE_AFTER_SECONDS, release_memory)
        return True

    async def main_loop(self) -> str:
        """Until a signal or a root task ends; returns why."""
        stopper = asyncio.create_task(self.signals.stop.wait(), name="signals")
        watched = {stopper, *self.tasks.values(), *self.service.tasks}
        done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if self.signals.stop.is_set():
            return f"signal {self.signals.first}"
        finished = next(iter(done))
        if finished.get_name() == "app":
            return "app exited"
        error = finished.exception() if not finished.cancelled() else None
        if isinstance(error, LeaseLost):
            log.error("lease_lost", error=str(error), detail="another pod replicates this database now; "
                      "this pod uploads nothing more and exits")
            return "lease lost"
        log.error("task_exited", task=finished.get_name(), error=repr(error) if error else None)
        return f"task {finished.get_name()} exited"

    def keep_lease(self, name: str, lease: Lease) -> None:
        """Renewed from acquisition on, fenced by a timer: no Litestream runs without a confirmed lease."""
        lease.position = lambda: self.state.databases[name].remote_txid
        assert self.child is not None
        self.tasks[f"lease:{name}"] = asyncio.create_task(lease.keep(self.child.fence, self.child.unfence),
                                                          name=f"lease:{name}")

    async def catch_up(self, db: Database, down_seconds: float = 0.0) -> None:
        """The replica answers again: upload now, not when Litestream's backoff lets it try again.
        After an outage of more than a few seconds its uploader is waiting out its SDK's retry
        delays (10 attempts, up to 20 s apart): the database is closed and reopened through the
        socket (the waiting upload is cancelled; the supervisor holds the WAL meanwhile), and its
        fresh uploader sends everything pending at once. Litestream itself keeps running; if the
        reopen fails (a close whose final upload cannot finish, a start refused), Litestream is
        restarted instead: never left with the database closed. It all starts after a random part of
        the outage's length (catch_up_delay): a hundred sidecars back together spread their backlogs
        and lease renewals rather than landing them in the same second."""
        delay = catch_up_delay(down_seconds)
        await asyncio.sleep(delay)
        for lease in self.leases.values():
            lease.renew_now()  # a lease renewals failed for: confirmed now, uploads resume at once if fenced
        control, child = self.control, self.child
        if control is None or child is None or not child.reading.is_set() or down_seconds <= LONG_OUTAGE_SECONDS:
            return
        started = time.monotonic()
        try:
            await child.hold()
            await control.stop(db.path, CATCH_UP_STOP_SECONDS)
            await control.start(db.path, CATCH_UP_STOP_SECONDS)
            result = await control.stage(db.path, CATCH_UP_STOP_SECONDS)
        except (ControlError, TimeoutError) as e:
            log.warning("catch_up_restart", db=db.name, error=str(e) or "timed out",
                        detail="the database could not be reopened: Litestream is restarted (the WAL held meanwhile)")
            await child.restart("catch up after the replica came back", kill=True)
            return
        if child.proc is not None and child.proc.returncode is None:
            await asyncio.to_thread(child.guard.release)
            child.reading.set()
        log.info("caught_up", db=db.name, how="reopen", seconds=round(time.monotonic() - started, 3),
                 txid=f"{result.txid:016x}", down_seconds=round(down_seconds, 1), spread_seconds=round(delay, 3))
        await self.probe.probe(db, force=True)

    async def check_files(self) -> None:
        """After every lag probe round (at once when a database file is renamed or recreated: the
        probe's watch wakes it). A database file replaced under Litestream (VACUUM INTO + rename,
        deleted and recreated) keeps it on the old inode: new rows would never reach the replica.
        Restart it onto the new file; the WAL check before every start makes that a full snapshot."""
        if self.child is None or not self.child.reading.is_set():
            return
        for db in self.config.databases:
            opened = self.child.inodes.get(db.name)
            try:
                now = db.path.stat().st_ino
            except FileNotFoundError:
                continue  # deleted: wait for the new file, never restart onto nothing
            if opened is not None and now != opened:
                self.state.db_replacements += 1
                log.warning("db_replaced", db=db.name, detail="the database file was replaced under Litestream; "
                            "restarting it onto the new file (a full snapshot follows)")
                await self.child.restart("database file replaced")
                return

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


def catch_up_delay(down_seconds: float, rand: Callable[[float, float], float] = random.uniform) -> float:
    """Seconds to wait before catching up after `down_seconds` of outage (a pure function): up to
    CATCH_UP_SPREAD_SHARE of the outage, uniformly spread, at most CATCH_UP_SPREAD_MAX_SECONDS. A
    10 s outage adds at most 1.5 s; after a 30 s one a herd's backlogs land over 4.5 s, not one."""
    return rand(0.0, min(max(0.0, down_seconds) * CATCH_UP_SPREAD_SHARE, CATCH_UP_SPREAD_MAX_SECONDS))


def unconfirmed_on_disk(db_path: Path, meta_dir: Path) -> bool:
    """Data on disk that no replica is known to hold: written since a restore, or left by an earlier
    Litestream (a sidecar restarted after an OOM kill beside a running app)."""
    if not has_data(db_path):
        return False
    if ondisk.local_position(db_path, meta_dir).source != "restored":
        return True
    wal = db_path.with_name(db_path.name + "-wal")
    return wal.exists() and wal.stat().st_size > 0  # the restored file is untouched, but its WAL is not


def stopped_before_start(replicator: Replicator, signals: Signals, interrupted_restore: bool) -> int:
    during = "restore" if interrupted_restore else "start-up (credentials, lease, checks)"
    if interrupted_restore:
        log.info("stopped_before_start", signal=signals.first, during=during)
        return int(ExitCode.INTERRUPTED)
    pending = [str(db.path) for db in replicator.config.databases if unconfirmed_on_disk(db.path, db.meta_dir)]
    if pending:
        log.error("stopped_before_start", signal=signals.first, during=during, dbs=pending,
                  detail="Litestream never ran, and these hold data no replica is known to hold "
                         "(written since a restore, or left by an earlier run): not uploaded")
        return int(ExitCode.FINAL_SYNC_UNCONFIRMED)
    log.info("stopped_before_start", signal=signals.first, during=during)
    return int(ExitCode.OK)


async def main(settings: Settings, signals: Signals) -> int:
    replicator = Replicator(settings, signals)
    try:
        startup = asyncio.create_task(replicator.startup(), name="startup")
        stopper = asyncio.create_task(signals.stop.wait(), name="signals")
        await asyncio.wait({startup, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if not startup.done() and (replicator.child is None or replicator.child.proc is None):
            # Stopped before Litestream ran. During --exec's restore that is an interruption
            # (143, its temp file removed); otherwise exit 0 only when nothing on disk can be missing
            # from the replica (nothing there, or the very file restore put there, untouched).
            interrupted_restore = replicator.restoring
            startup.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await startup
            return stopped_before_start(replicator, signals, interrupted_restore)
        if not await startup:
            return stopped_before_start(replicator, signals, False)
        reason = await replicator.main_loop()
        return await replicator.shutdown(reason)
    except SupervisorError:
        raise
    finally:
        await replicator.close()
