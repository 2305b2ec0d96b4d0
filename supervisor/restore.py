"""`restore`: bring each database back from its replica, or refuse to let the app start.

Fail closed: a database is only left absent when the replica prefix is genuinely empty. A
replica that is unreachable, denied, or holds objects that are not Litestream's stops the pod
with a distinct exit code. A restore is written to a temp file beside the target, checked with
PRAGMA integrity_check, fsynced and renamed into place; on any failure nothing is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets as random_secrets
import sqlite3
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from supervisor import config as lsconfig
from supervisor import litestream
from supervisor import replica as replicas
from supervisor.config import Database
from supervisor.errors import (
    ExitCode,
    Interrupted,
    ReplicaError,
    RestoreFailed,
    SupervisorError,
    Unreachable,
)
from supervisor.logs import get_logger, secrets
from supervisor.service import CredentialService
from supervisor.settings import Settings
from supervisor.signals import Signals
from supervisor.state import State

log = get_logger("restore")
PROGRESS_INTERVAL_SECONDS = 5.0


@dataclass(frozen=True)
class Outcome:
    db: Path
    result: str  # present | fresh | restored
    layout: str | None = None
    seconds: float = 0.0


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds

    def left(self) -> float:
        return self._end - time.monotonic()

    def check(self, what: str) -> float:
        left = self.left()
        if left <= 0:
            raise Unreachable(f"{what}: gave up after --timeout {self.seconds:g}s")
        return left


async def inspect_replica(service: CredentialService, db: Database, deadline: Deadline) -> replicas.Layout:
    """List the replica prefix, retrying transient failures and refreshing stale credentials."""
    delay = 0.5
    refreshed = False
    while True:
        left = deadline.check(f"s3://{db.replica.bucket}/{db.replica.path}/")
        try:
            client = service.s3(db)
            return await asyncio.wait_for(asyncio.to_thread(replicas.layout, client, db.replica), left)
        except TimeoutError:
            raise Unreachable(f"s3://{db.replica.bucket}/{db.replica.path}/: no answer within "
                              f"--timeout {deadline.seconds:g}s") from None
        except replicas.StaleCredentials:
            if refreshed:
                raise
            refreshed = True
            await service.keeper.exchange("s3_refused_credentials")
        except SupervisorError as e:
            if e.exit_code == ExitCode.ACCESS_DENIED and not refreshed:
                # RGW answers AccessDenied for lapsed temporary credentials: refresh once first.
                refreshed = True
                await service.keeper.exchange("s3_access_denied")
                continue
            if not isinstance(e, Unreachable):
                raise
            log.warning("replica_unreachable", db=str(db.path), error=str(e), retry_in=delay)
            await asyncio.sleep(min(delay, max(0.0, deadline.left())))
            delay = min(delay * 2, 10.0)


def integrity_check(path: Path) -> None:
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = [r[0] for r in con.execute("PRAGMA integrity_check").fetchall()]
        finally:
            con.close()
    except sqlite3.DatabaseError as e:
        raise RestoreFailed(f"restored file is not a valid SQLite database ({e})") from None
    if rows != ["ok"]:
        raise RestoreFailed(f"integrity check failed: {'; '.join(rows[:3])}")


def fsync_and_rename(tmp: Path, target: Path) -> None:
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.rename(tmp, target)
    fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_temp(tmp: Path) -> None:
    for leftover in tmp.parent.glob(tmp.name + "*"):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()


async def run_litestream_restore(service: CredentialService, binary: str, config_path: Path,
                                 db: Database, tmp: Path, deadline: Deadline) -> None:
    cmd = [binary, "restore", "-config", str(config_path), "-o", str(tmp), str(db.path)]
    proc = await asyncio.create_subprocess_exec(
        *cmd, env=service.child_environment(), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
    )
    tail: deque[str] = deque(maxlen=5)

    async def relay() -> None:
        assert proc.stdout is not None
        while raw := await proc.stdout.readline():
            line = secrets.redact(raw.decode(errors="replace").rstrip())
            if line:
                tail.append(line)
                level, message, fields = litestream.parse_line(line)
                getattr(log, level)("litestream", msg=message, db=str(db.path), **fields)

    async def progress() -> None:
        # Litestream prints nothing while it downloads: say how far it got, every few seconds.
        started = time.monotonic()
        while True:
            await asyncio.sleep(PROGRESS_INTERVAL_SECONDS)
            written = sum(p.stat().st_size for p in tmp.parent.glob(tmp.name + "*") if p.is_file())
            log.info("restore_progress", db=str(db.path), bytes_written=written,
                     seconds=round(time.monotonic() - started), timeout_left=round(deadline.left()))

    relay_task = asyncio.create_task(relay())
    progress_task = asyncio.create_task(progress())
    try:
        left = deadline.check(f"restore of {db.path}")
        try:
            rc = await asyncio.wait_for(proc.wait(), left)
        except TimeoutError:
            raise Unreachable(f"restore of {db.path} did not finish within --timeout "
                              f"{deadline.seconds:g}s") from None
        await relay_task
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        relay_task.cancel()
        progress_task.cancel()
    if rc != 0:
        last = tail[-1] if tail else "no output"
        raise RestoreFailed(f"litestream restore of {db.path} exited {rc}: {last}")


async def restore_one(service: CredentialService, binary: str, config_path: Path, db: Database,
                      deadline: Deadline, require_replica: bool) -> Outcome:
    started = time.monotonic()
    if db.path.exists():
        log.info("db_present", db=str(db.path), detail="left untouched")
        return Outcome(db.path, "present")
    if db.path.parent.exists() and not os.access(db.path.parent, os.W_OK):
        raise RestoreFailed(f"{db.path.parent} is not writable (mount a volume there)")
    db.path.parent.mkdir(parents=True, exist_ok=True)
    where = f"s3://{db.replica.bucket}/{db.replica.path}/"
    found = await inspect_replica(service, db, deadline)
    log.info("replica_inspected", db=str(db.path), replica=where, layout=found.kind,
             objects=found.objects, description=found.describe())
    if found.kind == "empty":
        if require_replica:
            raise SupervisorError(f"{where} is empty and --require-replica is set",
                                  exit_code=ExitCode.REPLICA_REQUIRED)
        log.info("fresh_start", db=str(db.path), replica=where, detail="replica is empty; no file created")
        return Outcome(db.path, "fresh", found.kind)
    if found.kind == "unknown":
        raise ReplicaError(f"{where} holds {found.objects} object(s) that are not a Litestream replica "
                           f"(e.g. {found.unexpected}); refusing to start on an empty database: "
                           "fix 'path' in litestream.yml or move those objects")
    if found.unexpected:
        log.warning("replica_has_foreign_objects", db=str(db.path), example=found.unexpected)
    tmp = db.path.parent / f".{db.path.name}.restoring-{random_secrets.token_hex(4)}"
    try:
        await run_litestream_restore(service, binary, config_path, db, tmp, deadline)
        if not tmp.exists():
            raise RestoreFailed(f"litestream restore wrote nothing although {where} holds "
                                f"{found.objects} object(s) ({found.describe()})")
        await asyncio.to_thread(integrity_check, tmp)
        size = tmp.stat().st_size
        await asyncio.to_thread(fsync_and_rename, tmp, db.path)
    finally:
        _remove_temp(tmp)
    seconds = time.monotonic() - started
    log.info("restored", db=str(db.path), layout=found.kind, bytes=size, seconds=round(seconds, 2))
    return Outcome(db.path, "restored", found.kind, seconds)


async def restore(service: CredentialService, binary: str, databases: list[Database],
                  deadline: Deadline, require_replica: bool) -> list[Outcome]:
    """Restore each database in turn; the first failure stops the pod."""
    config_path = service.child_config()
    outcomes = []
    for db in databases:
        outcomes.append(await restore_one(service, binary, config_path, db, deadline, require_replica))
    return outcomes


async def main(settings: Settings, signals: Signals) -> int:
    """parse (done) -> validate -> run -> close, interruptible by SIGTERM/SIGINT."""
    config = lsconfig.load(settings.config_path, settings.environment)
    databases = [config.database(settings.db)] if settings.db else list(config.databases)
    binary = litestream.resolve(settings.litestream)
    deadline = Deadline(settings.timeout_seconds)
    service = CredentialService(settings, State(), config)

    async def work() -> list[Outcome]:
        await service.start(max(0.1, deadline.left()))
        return await restore(service, binary, databases, deadline, settings.require_replica)

    task = asyncio.create_task(work(), name="restore")
    stopper = asyncio.create_task(signals.stop.wait(), name="signals")
    try:
        done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if task not in done:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            raise Interrupted(f"interrupted by signal {signals.first} during restore; no file left behind")
        outcomes = task.result()
    finally:
        stopper.cancel()
        await service.close()
    summary = {str(o.db): o.result for o in outcomes}
    log.info("restore_done", databases=summary)
    return int(ExitCode.OK)
