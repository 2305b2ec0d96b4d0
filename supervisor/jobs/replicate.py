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
from pathlib import Path
from typing import Any

from supervisor.core.budget import Budget
from supervisor.core.errors import ExitCode, LeaseLost, SupervisorError, Unreachable
from supervisor.core.inotify import Inotify
from supervisor.core.logs import get_logger
from supervisor.core.memory import release_memory
from supervisor.core.settings import Settings
from supervisor.core.signals import Signals
from supervisor.core.state import State
from supervisor.health.server import HealthServer
from supervisor.identity import deletes
from supervisor.identity.service import CredentialService
from supervisor.jobs.outage import Outages
from supervisor.jobs.shutdown import Shutdown
from supervisor.jobs.startup import first_credentials, stopped_before_start
from supervisor.litestream import binary as litestream
from supervisor.litestream import config as lsconfig
from supervisor.litestream.child import ChildSupervisor
from supervisor.litestream.control import Control
from supervisor.litestream.process import ProcessTable, become_subreaper
from supervisor.litestream.reaper import reap_orphans
from supervisor.litestream.walguard import WalGuard
from supervisor.replica import inspection
from supervisor.replica.drills import Drills
from supervisor.replica.lag import LagProbe
from supervisor.replica.leases import leases_for
from supervisor.replica.verify import Verifier

log = get_logger("replicate")
FOREVER = 10 * 365 * 24 * 3600.0
RELEASE_AFTER_SECONDS = 5.0
DELETE_CHECK_SECONDS = 10.0


class Replicator(Shutdown, Outages):
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
                              inotify=self.inotify, credentials_valid=self.service.keeper.valid)
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
        self.reopening = asyncio.Lock()

    async def startup(self) -> bool:
        host, port = self.settings.replicate.health_addr
        await self.health.start(host, port)
        self.service.address = await self.service.broker.start()
        if not await first_credentials(self.service, self.signals.stop):
            return False
        self.child_config = self.service.child_config(socket=True, spread=True)
        environment = self.service.child_environment()
        self.control = Control(self.service.socket_path)
        self.child = ChildSupervisor(
            litestream.replicate_cmd(self.binary, self.child_config), environment, self.state,
            self.processes, guard=WalGuard(list(self.config.databases), disabled=self.settings.environment.get(
                "_LITESTREAM_SUPERVISOR_TEST_NO_WAL_GUARD") == "1"), control=self.control)
        self.verifier = Verifier(self.service, self.binary, self.child_config, self.settings.verify.scratch_dir,
                                 self.control, gentle=True)
        await self.child.hold()  # until Litestream holds its own: the app may be writing already
        try:  # before the refreshes start: it may trade the token again itself
            await deletes.settle(self.service, Budget(DELETE_CHECK_SECONDS, "the batch-delete check"))
        except Unreachable as e:  # the store does not answer now: the lease and the lag probe say so
            log.info("batch_delete_unchecked", error=str(e))
        self.service.start_background(inotify=self.inotify)
        if self.settings.replicate.exec_command:
            self.restoring = True
            from supervisor.replica import restore as restorer  # --exec only: the sidecar need not load it

            await restorer.restore(self.service, self.binary, list(self.config.databases),
                                   Budget(self.settings.timeout_seconds), require_replica=False, leases=self.leases,
                                   if_local_behind=self.settings.if_local_behind)
            self.restoring = False
        for name, lease in self.leases.items():  # --exec: restore took them
            if not self.settings.replicate.exec_command:  # adopts its own pod's restore's lease, or waits
                await lease.acquire(Budget(FOREVER, "--timeout"))
            # renewed from now on, fenced by a timer: no Litestream runs without a confirmed lease (kept
            # at once, not after the others: waiting for one must not expire another)
            lease.position = lambda name=name: self.state.databases[name].remote_txid
            self.tasks[f"lease:{name}"] = asyncio.create_task(lease.keep(self.child.fence, self.child.unfence),
                                                              name=f"lease:{name}")
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

    async def check_files(self) -> None:
        """After every lag probe round (at once when a database file is renamed or recreated: the
        probe's watch wakes it). A database file replaced under Litestream (VACUUM INTO + rename,
        deleted and recreated) keeps it on the old inode: new rows would never reach the replica.
        Restart it onto the new file; the WAL check before every start makes that a full snapshot."""
        if self.child is None or not self.child.reading.is_set():
            return
        for db in self.config.databases:
            if not db.path.exists():
                continue  # deleted: wait for the new file, never restart onto nothing
            if self.child.file_changed(db.name, db.path):
                self.state.db_replacements += 1
                log.warning("db_replaced", db=db.name, detail="the database file was replaced under Litestream; "
                            "restarting it onto the new file (a full snapshot follows)")
                await self.child.restart("database file replaced")
                return


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
            return stopped_before_start(replicator.config.databases, signals, interrupted_restore)
        if not await startup:
            return stopped_before_start(replicator.config.databases, signals, False)
        reason = await replicator.main_loop()
        replicator.cancel_outage_work()
        return await replicator.shutdown(reason)
    except SupervisorError:
        raise
    finally:
        await replicator.close()
