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
import signal
from pathlib import Path
from typing import Any

from supervisor import config as lsconfig
from supervisor import inspection, litestream, ondisk, process, walreset
from supervisor.budget import Budget
from supervisor.child import ChildSupervisor
from supervisor.errors import CredentialsRefused, ExitCode, LeaseLost, SupervisorError, TokenError
from supervisor.health import HealthServer
from supervisor.lag import LagProbe
from supervisor.leaseholder import leases_for
from supervisor.logs import get_logger
from supervisor.outcome import FinalPosition, has_data, shutdown_exit_code
from supervisor.process import ProcessTable, become_subreaper
from supervisor.reaper import reap_orphans
from supervisor.service import CredentialService
from supervisor.settings import Settings
from supervisor.signals import Signals
from supervisor.state import State

log = get_logger("replicate")
FOREVER = 10 * 365 * 24 * 3600.0


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
        self.probe = LagProbe(self.service.s3, lambda: self.service.keeper.current is not None, self.config,
                              self.state, settings.replicate.lag_interval_seconds)
        self.processes = ProcessTable()
        self.leases = leases_for(settings, list(self.config.databases), self.service.s3, self.state,
                                 settings.adopt_replica_from)
        self.child: ChildSupervisor | None = None
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
        self.service.start_background()
        self.child_config = self.service.child_config()
        paths = [db.path for db in self.config.databases]
        self.child = ChildSupervisor(
            litestream.replicate_cmd(self.binary, self.child_config), self.service.child_environment(), self.state,
            self.processes, reset_wal=lambda: walreset.truncate_all(paths, "start"),
            # a previous Litestream left state here (this sidecar restarted beside a running app)
            needs_snapshot=any(walreset.litestream_left_state(db.meta_dir) for db in self.config.databases))
        if self.settings.replicate.exec_command:
            self.restoring = True
            from supervisor import restore as restorer  # --exec only: the sidecar need not load it

            await restorer.restore(self.service, self.binary, list(self.config.databases),
                                   Budget(self.settings.timeout_seconds), require_replica=False, leases=self.leases,
                                   if_local_behind=self.settings.if_local_behind)
            self.restoring = False
        else:
            for lease in self.leases.values():  # adopts its own pod's restore's lease, or waits (not ready)
                await lease.acquire(Budget(FOREVER, "--timeout"))
        # Renewed from acquisition on, fenced by a timer: no Litestream runs without a confirmed lease.
        for name, lease in self.leases.items():
            lease.position = lambda name=name: self.state.databases[name].remote_txid
            self.tasks[f"lease:{name}"] = asyncio.create_task(lease.keep(self.child.fence, self.child.unfence),
                                                              name=f"lease:{name}")
        if not self.settings.replicate.exec_command:  # restore checked already with --exec
            for db in self.config.databases:
                lease = self.leases.get(db.name)
                await inspection.check_before_replicating(self.service, db, Budget(FOREVER, "--timeout"),
                                                          self.settings.if_local_behind,
                                                          lease.replica_txid if lease else 0)
        if os.getpid() == 1 or (self.settings.replicate.exec_command and become_subreaper()):
            # PID 1, or the app's subreaper: orphans are ours to reap (never a process we started)
            self.tasks["reaper"] = asyncio.create_task(reap_orphans(self.processes), name="reaper")
        self.child.gate = lambda: all(lease.may_upload() for lease in self.leases.values())
        self.tasks["litestream"] = asyncio.create_task(self.child.run(), name="litestream")
        await self.child.wait_started(self.tasks["litestream"])
        self.tasks["lag-probe"] = asyncio.create_task(self.probe.run(), name="lag-probe")
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

    async def final_sync(self, budget: Budget) -> bool:
        """`litestream replicate -once` after the daemon exited: it turns whatever is still only in
        the WAL into LTX and uploads it (an app that wrote and exited within one sync interval, a
        database created after start-up, frames the daemon never staged). True only if it exited 0
        in time: its non-zero exit means nothing was confirmed."""
        if not any(has_data(db.path) for db in self.config.databases):
            return True
        assert self.child is not None
        # Litestream was away during the run and did not catch up since: empty the WAL so that this
        # -once snapshots. Not on every stop: an emptied WAL makes Litestream upload the whole db.
        if self.child.needs_snapshot and not await walreset.truncate_all(
                [db.path for db in self.config.databases], "final_sync"):
            return False  # Litestream would upload a replica missing checkpointed rows: unconfirmed
        cmd = litestream.replicate_cmd(self.binary, self.child_config, once=True)
        if not self.child.gate():
            log.error("final_sync_skipped", detail="lease not confirmed within its fence window: no upload allowed")
            return False
        try:
            proc = await process.spawn(cmd, self.child.env, self.processes)
        except SupervisorError as e:
            log.error("final_sync_failed", error=str(e))
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
        log.info("final_sync_done", returncode=proc.returncode, ok=ok)
        return ok

    async def shutdown(self, reason: str) -> int:
        """not ready -> app -> one SIGTERM to Litestream -> -once -> verify, all within --shutdown-timeout."""
        self.state.shutting_down = True
        budget = Budget(self.settings.replicate.shutdown_timeout_seconds, "--shutdown-timeout")
        log.info("shutdown_started", reason=reason, budget_seconds=budget.seconds)
        app_code = await self.stop_app(budget)
        for name in ("lag-probe",):
            task = self.tasks.get(name)
            if task:
                task.cancel()
        lost = any(lease.state.lost for lease in self.leases.values())
        if lost and self.child is not None:
            await self.child.fence()  # no final upload: the replica is another pod's now
        rc = await self.child.stop(budget, self.signals.force) if self.child else None
        finals: list[FinalPosition] = []
        forced = self.signals.force.is_set()
        if self.child is not None and not forced and not lost:
            # Only while this pod provably holds every lease may it upload once more: a lease not
            # confirmed lately (an outage just ended) gets one renewal to prove it first, by the one
            # renewer; the fence timer keeps running and kills the final upload too.
            for lease in self.leases.values():
                await lease.confirm(budget.sub(min(5.0, budget.left())))
            fenced = [name for name, lease in self.leases.items() if not lease.may_upload()]
            if fenced:
                log.error("final_sync_skipped", dbs=fenced, detail="lease not confirmed: no upload allowed")
            catch_up_ok = not fenced and await self.final_sync(budget)
            finals = await self.probe.final_positions(budget, catch_up_ok, self.signals.force)
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
            for lease in self.leases.values():  # the successor may restore right now, not after a TTL
                await lease.release(Budget(max(2.0, budget.left()), "--shutdown-timeout"))
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
