"""`replicate`: the sidecar's lifecycle, top to bottom.

startup:   health server (not ready) -> broker -> first credentials (waits while STS is down)
           -> [--exec: restore] -> keeper + token watcher -> Litestream -> lag probe -> ready
main loop: until a signal, or a root task exits unexpectedly (or, with --exec, the app exits)
shutdown:  not ready -> [--exec: stop the app] -> one SIGTERM to Litestream -> wait
           -> verify the replica holds the final local position -> stop the endpoints
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from typing import Any

from supervisor import config as lsconfig
from supervisor import litestream
from supervisor import restore as restorer
from supervisor.child import ChildSupervisor
from supervisor.errors import CredentialsRefused, ExitCode, SupervisorError, TokenError
from supervisor.health import HealthServer
from supervisor.lag import LagProbe
from supervisor.logs import get_logger
from supervisor.reaper import reap_orphans
from supervisor.service import CredentialService
from supervisor.settings import Settings
from supervisor.signals import Signals
from supervisor.state import State

log = get_logger("replicate")
FOREVER = 10 * 365 * 24 * 3600.0


async def first_credentials(service: CredentialService, stop: asyncio.Event) -> bool:
    """Wait for credentials (STS down or token refused: keep trying, not ready). False if stopped."""
    delay = service.settings.keeper.retry_initial_seconds
    while not stop.is_set():
        attempt = asyncio.create_task(service.keeper.obtain(FOREVER))
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({attempt, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if attempt not in done:
            attempt.cancel()
            with contextlib.suppress(asyncio.CancelledError, SupervisorError):
                await attempt
            return False
        try:
            attempt.result()
            return True
        except (CredentialsRefused, TokenError) as e:
            log.error("credentials_refused", error=str(e), retry_in=round(delay, 1),
                      detail="not ready; retrying (a rotated token is picked up)")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, service.settings.keeper.retry_max_seconds)
    return False


def _exit_code_of(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


class Replicator:
    def __init__(self, settings: Settings, signals: Signals) -> None:
        self.settings = settings
        self.signals = signals
        self.config = lsconfig.load(settings.config_path, settings.environment)
        self.binary = litestream.resolve(settings.litestream)
        self.state = State()
        self.health = HealthServer(self.state, settings.replicate.max_lag_seconds)
        self.service = CredentialService(settings, self.state, self.config)
        self.probe = LagProbe(self.service, self.config, self.state, settings.replicate.lag_interval_seconds)
        self.child: ChildSupervisor | None = None
        self.app: asyncio.subprocess.Process | None = None
        self.tasks: dict[str, asyncio.Task[Any]] = {}

    async def startup(self) -> bool:
        host, port = self.settings.replicate.health_addr
        await self.health.start(host, port)
        self.service.address = await self.service.broker.start()
        if not await first_credentials(self.service, self.signals.stop):
            return False
        self.service.start_background()
        if self.settings.replicate.exec_command:
            await restorer.restore(self.service, self.binary, list(self.config.databases),
                                   restorer.Deadline(self.settings.timeout_seconds), require_replica=False)
        self.child = ChildSupervisor(self.binary, self.service.child_config(),
                                     self.service.child_environment(), self.state)
        self.tasks["litestream"] = asyncio.create_task(self.child.run(), name="litestream")
        await self.child.wait_started()
        self.tasks["lag-probe"] = asyncio.create_task(self.probe.run(), name="lag-probe")
        if os.getpid() == 1:
            self.tasks["reaper"] = asyncio.create_task(reap_orphans(self._own_pids), name="reaper")
        if self.settings.replicate.exec_command:
            cmd = self.settings.replicate.exec_command
            self.app = await asyncio.create_subprocess_exec(*cmd)
            log.info("app_started", command=cmd[0], pid=self.app.pid)
            self.tasks["app"] = asyncio.create_task(self.app.wait(), name="app")
        self.state.started = True
        log.info("ready", databases=[str(db.path) for db in self.config.databases])
        return True

    def _own_pids(self) -> set[int]:
        pids = {p for p in (self.state.child_pid, self.app.pid if self.app else None) if p}
        return pids

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
        log.error("task_exited", task=finished.get_name(), error=repr(error) if error else None)
        return f"task {finished.get_name()} exited"

    async def stop_app(self) -> int | None:
        app = self.app
        if app is None:
            return None
        if app.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                app.send_signal(self.signals.first or signal.SIGTERM)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(app.wait(), self.settings.replicate.shutdown_timeout_seconds)
            if app.returncode is None:
                app.kill()
                await app.wait()
        code = _exit_code_of(app.returncode or 0)
        log.info("app_exited", exit_code=code)
        return code

    async def final_sync(self, timeout_seconds: float) -> None:
        """`litestream replicate -once` after the daemon exited: it uploads whatever the daemon had
        not yet seen (an app that wrote and exited within one sync interval, a database created
        after start-up), so the verification below compares against the true final state."""
        assert self.child is not None
        if not any(db.path.exists() for db in self.config.databases):
            return
        proc = await asyncio.create_subprocess_exec(
            *self.child.cmd, "-once", env=self.child.env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True)
        assert proc.stdout is not None
        relay = asyncio.create_task(litestream.relay_output(proc.stdout, log))
        try:
            rc = await asyncio.wait_for(proc.wait(), timeout_seconds)
            log.info("final_sync_done", returncode=rc)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            log.error("final_sync_timeout", timeout_seconds=timeout_seconds)
        finally:
            await asyncio.wait({relay}, timeout=2)
            relay.cancel()

    async def shutdown(self, reason: str) -> int:
        """not ready -> app -> one SIGTERM to Litestream -> wait -> verify -> (endpoints in close())."""
        self.state.shutting_down = True
        log.info("shutdown_started", reason=reason)
        app_code = await self.stop_app()
        for name in ("lag-probe", "reaper"):
            task = self.tasks.get(name)
            if task:
                task.cancel()
        timeout = self.settings.replicate.shutdown_timeout_seconds
        rc = await self.child.stop(timeout, self.signals.force) if self.child else None
        code = int(ExitCode.OK)
        if self.child is not None and not self.signals.force.is_set():
            await self.final_sync(timeout)
            finals = await self.probe.final_positions(min(10.0, timeout))
            for final in finals:
                if final.confirmed:
                    log.info("final_position_confirmed", db=final.db, txid=f"{final.local_txid:016x}")
                elif final.remote_txid is None:
                    log.error("final_position_unconfirmed", db=final.db, local_txid=f"{final.local_txid:016x}",
                              detail="replica unreachable: writes up to this position may not be uploaded")
                    code = int(ExitCode.FINAL_SYNC_UNCONFIRMED)
                else:
                    log.error("final_position_unconfirmed", db=final.db, local_txid=f"{final.local_txid:016x}",
                              remote_txid=f"{final.remote_txid:016x}",
                              detail="the replica is behind: these transactions were not uploaded")
                    code = int(ExitCode.FINAL_SYNC_UNCONFIRMED)
        elif self.signals.force.is_set():
            log.error("forced_stop", detail="second signal: final upload not awaited")
            code = int(ExitCode.FINAL_SYNC_UNCONFIRMED)
        if reason.startswith("task") and code == ExitCode.OK:
            code = int(ExitCode.INTERNAL)  # a root task died: say so, even if the data is safe
        log.info("shutdown_done", litestream_returncode=rc, exit_code=app_code if app_code is not None else code)
        if app_code is not None:
            return app_code if app_code != 0 or code == 0 else code
        return code

    async def close(self) -> None:
        for task in self.tasks.values():
            task.cancel()
        for task in self.tasks.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.child is not None and self.child.proc is not None and self.child.proc.returncode is None:
            self.child.proc.kill()
            await self.child.proc.wait()
        await self.service.close()
        await self.health.close()


async def main(settings: Settings, signals: Signals) -> int:
    replicator = Replicator(settings, signals)
    try:
        startup = asyncio.create_task(replicator.startup(), name="startup")
        stopper = asyncio.create_task(signals.stop.wait(), name="signals")
        await asyncio.wait({startup, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if not startup.done() and replicator.child is None:
            # A signal during --exec's restore: stop it (its temp file is removed) and leave.
            startup.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await startup
            log.info("stopped_before_start", signal=signals.first)
            return int(ExitCode.INTERRUPTED)
        if not await startup:
            log.info("stopped_before_start", signal=signals.first)
            return int(ExitCode.OK)
        reason = await replicator.main_loop()
        return await replicator.shutdown(reason)
    except SupervisorError:
        raise
    finally:
        await replicator.close()
