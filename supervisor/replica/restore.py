"""`restore`: bring each database back from its replica, or refuse to let the app start.

Fail closed: a database is only left absent when the replica prefix is genuinely empty. A
replica that is unreachable, denied, or holds objects that are not Litestream's stops the pod
with a distinct exit code. A restore is written to a temp file beside the target, checked with
PRAGMA integrity_check, fsynced and renamed into place; on any failure nothing is left behind.

Before anything is restored, files that would corrupt the restored database are moved aside
(never deleted): a `-wal`, `-shm` or `-journal` without its database (SQLite would replay the old
WAL over the restored file) and a Litestream meta dir from an earlier life. A file at the db path
that is not a SQLite database is never "present": if the replica holds data, restore stops and
names it (Litestream would otherwise treat the replica as ahead and overwrite its head with it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets as random_secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from supervisor.core.budget import Budget
from supervisor.core.errors import (
    ExitCode,
    Interrupted,
    LocalBehind,
    LocalNotSQLite,
    ReplicaError,
    RestoreFailed,
    SupervisorError,
)
from supervisor.core.logs import get_logger
from supervisor.core.settings import Settings
from supervisor.core.signals import Signals
from supervisor.core.state import State
from supervisor.identity.service import CredentialService
from supervisor.litestream import binary as litestream
from supervisor.litestream import config as lsconfig
from supervisor.litestream.config import Database
from supervisor.replica import inspection, ondisk
from supervisor.replica import layout as replicas
from supervisor.replica.leaseholder import Lease
from supervisor.replica.leases import leases_for
from supervisor.replica.litestream_restore import HeldLog, run_litestream_restore
from supervisor.replica.localdb import (
    COMPANIONS,
    _remove_temp,
    fsync_and_rename,
    hazards,
    integrity_check,
    local_kind,
    move_aside,
    orphaned_wal,
    remove_stale_temps,
    stamp,
    temp_name,
)

log = get_logger("restore")


@dataclass(frozen=True)
class Outcome:
    db: Path
    result: str  # present | fresh | restored
    layout: str | None = None
    seconds: float = 0.0


async def check_present(service: CredentialService, db: Database, budget: Budget, lease: Lease | None,
                        if_local_behind: str, verified: Callable[[], Awaitable[None]]) -> tuple[bool, replicas.Layout]:
    """A SQLite file at the db path: (keep it?, the replica's layout). Kept only when it is not behind
    the replica (or the operator chose `keep`), after a quick check; `restore` moves it aside (once
    `verified`: the store passed the lease's probe)."""
    seen = await inspection.look(service, db, budget, lease, restoring=if_local_behind == "restore")
    found, verdict = seen.found, seen.verdict
    if verdict.keep or if_local_behind == "keep":
        await asyncio.to_thread(integrity_check, db.path, "quick_check")
        if verdict.keep:
            log.info("db_present", db=db.name, detail=f"left untouched: {verdict.reason}")
        else:
            log.warning("db_kept_behind_replica", db=db.name, detail=f"--if-local-behind keep: {verdict.reason}; "
                        "it becomes the replica's new head (a rollback)")
        return True, found
    if if_local_behind != "restore":
        raise LocalBehind(
            f"{db.path}: refusing to start on it: {verdict.reason}; Litestream would make it the replica's new "
            "head and drop what is newer. Either --if-local-behind restore (it is moved aside, never deleted, and "
            "the replica restored) or --if-local-behind keep (it becomes the new head: a rollback)")
    await verified()
    companions = [db.path, *(db.path.with_name(db.path.name + c) for c in COMPANIONS), db.meta_dir]
    moved = move_aside([p for p in companions if p.exists() or p.is_symlink()], stamp())
    log.warning("db_moved_aside", db=db.name, moved=moved, detail=f"--if-local-behind restore: {verdict.reason}")
    return False, found


async def restore_one(service: CredentialService, binary: str, config_path: Path, db: Database,
                      budget: Budget, require_replica: bool, lease: Lease | None = None,
                      if_local_behind: str = "refuse", on_held: Callable[[Lease], None] = lambda _: None) -> Outcome:
    started = time.monotonic()
    store_check = None
    if lease is not None:
        # Before anything is inspected: the previous holder's final upload must be in the replica.
        store_check = await lease.acquire(budget, verify_later=True)
        on_held(lease)  # renewed from now on: a restore may outlast the lease's TTL

    async def verified() -> None:
        """The store passed the lease's probe: before any outcome is final or any file renamed."""
        if store_check is not None:
            await store_check

    try:
        return await _restore_held(service, binary, config_path, db, budget, require_replica, lease,
                                   if_local_behind, verified, started)
    except BaseException as e:
        if store_check is not None:
            refused = store_check.exception() if store_check.done() and not store_check.cancelled() else None
            if refused is not None and not isinstance(e, asyncio.CancelledError):
                # A store that cannot hold a lease: that, not what failed beside its probe, is the news
                raise refused from None
            store_check.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved: never logged
        raise


async def _restore_held(service: CredentialService, binary: str, config_path: Path, db: Database, budget: Budget,
                        require_replica: bool, lease: Lease | None, if_local_behind: str,
                        verified: Callable[[], Awaitable[None]], started: float) -> Outcome:
    removed = remove_stale_temps(db.path)
    if removed:
        log.warning("stale_restore_files_removed", db=db.name, files=removed,
                    detail="left by an earlier restore that was killed")
    kind, size = local_kind(db.path)
    if kind == "not_sqlite" and (orphan := orphaned_wal(db.path, size)):
        raise LocalNotSQLite(orphan)
    known: replicas.Layout | None = None
    if kind == "sqlite":
        keep, known = await check_present(service, db, budget, lease, if_local_behind, verified)
        if keep:
            await verified()
            return Outcome(db.path, "present", known.kind)
        kind = "absent"
    if db.path.parent.exists() and not os.access(db.path.parent, os.W_OK):
        raise RestoreFailed(f"{db.path.parent} is not writable (mount a volume there, writable by uid {os.getuid()})")
    if kind == "absent":
        stale = hazards(db)
        if stale:
            await verified()
            moved = move_aside(stale, stamp())
            log.warning("stale_files_moved", db=db.name, moved=moved,
                        detail="files of an earlier database beside a missing one would be replayed over "
                               "the restored data; kept under these names, delete them when not needed")
    db.path.parent.mkdir(parents=True, exist_ok=True)
    where = db.replica.location
    tmp = db.path.parent / f"{temp_name(db.path)}{random_secrets.token_hex(4)}"
    # Litestream starts downloading while we look at the replica (one listing): the answer decides
    # whether its work is kept or it is stopped and its file removed, as if it had never run.
    held = HeldLog()
    spawned = time.monotonic()
    restoring = asyncio.create_task(run_litestream_restore(service, binary, config_path, db, tmp, budget, held))
    try:
        found = await inspection.to_restore(service, db, budget, lease, known)
        if found.kind == "empty":
            if require_replica:
                raise SupervisorError(f"{where} is empty and --require-replica is set",
                                      exit_code=ExitCode.REPLICA_REQUIRED)
            if kind == "not_sqlite":
                log.info("db_present", db=db.name, bytes=size, detail="not a SQLite database yet (e.g. 0 bytes); "
                         "replica is empty, so it is the app's to fill")
                await verified()
                return Outcome(db.path, "present", found.kind)
            log.info("fresh_start", db=db.name, replica=where, detail="replica is empty; no file created")
            await verified()
            return Outcome(db.path, "fresh", found.kind)
        if found.kind == "unknown":
            raise ReplicaError(f"{where} holds {found.objects} object(s) that are not a Litestream replica "
                               f"(e.g. {found.unexpected}); refusing to start on an empty database: "
                               "fix 'path' in litestream.yml or move those objects")
        if kind == "not_sqlite":
            raise LocalNotSQLite(f"{db.path} is not a SQLite database ({size} bytes, no 'SQLite format 3' header) "
                                 f"while {where} holds a replica ({found.describe()}); Litestream would overwrite "
                                 "the replica with it: move the file away (it is never deleted) and restart to restore")
        if found.gap:
            raise RestoreFailed(f"{where} is incomplete: {found.gap} (objects deleted, a lifecycle rule?); refusing "
                                "to restore a partial database: bring the objects back, or restore on purpose with "
                                "`litestream restore` by hand")
        if found.unexpected:
            log.warning("replica_has_foreign_objects", db=db.name, example=found.unexpected)
        held.release()
        await restoring
        downloaded = time.monotonic()
        if not tmp.exists():
            raise RestoreFailed(f"litestream restore wrote nothing although {where} holds "
                                f"{found.objects} object(s) ({found.describe()})")
        await asyncio.to_thread(integrity_check, tmp)
        checked = time.monotonic()
        size = tmp.stat().st_size
        await verified()
        await asyncio.to_thread(fsync_and_rename, tmp, db.path)
        # What the sidecar (and a later restore) compares with the replica: this file is the replica's
        # state at its newest transaction, until someone replaces it.
        ondisk.mark_restored(db.path, db.meta_dir, found.max_txid, where)
    finally:
        if not restoring.done():
            restoring.cancel()
        with contextlib.suppress(asyncio.CancelledError, SupervisorError):
            await restoring  # its process is killed and gone before the temp files are removed
        _remove_temp(tmp)
    seconds = time.monotonic() - started
    # Where the time went: on a large database the check is the part that grows beside Litestream's.
    log.info("restored", db=db.name, layout=found.kind, bytes=size, seconds=round(seconds, 2),
             litestream_seconds=round(downloaded - spawned, 3), check_seconds=round(checked - downloaded, 3),
             txid=f"{found.max_txid:016x}")
    return Outcome(db.path, "restored", found.kind, seconds)


async def restore(service: CredentialService, binary: str, databases: list[Database],
                  budget: Budget, require_replica: bool, leases: dict[str, Lease] | None = None,
                  if_local_behind: str = "refuse") -> list[Outcome]:
    """Restore each database in turn; the first failure stops the pod.

    Each database's lease is taken first and renewed from then on, through its own restore and the
    others'; it is kept (not
    released) at the end: the replicate sidecar of the same pod adopts it.
    """
    leases = leases or {}
    config_path = service.child_config()
    outcomes = []
    keepers: list[asyncio.Task[None]] = []
    try:
        for db in databases:
            lease = leases.get(db.name)
            outcomes.append(await restore_one(
                service, binary, config_path, db, budget, require_replica, lease, if_local_behind,
                on_held=lambda lease, name=db.name: keepers.append(asyncio.create_task(lease.keep(),
                                                                                        name=f"lease:{name}"))))
    finally:
        for task in keepers:
            task.cancel()
        for task in keepers:
            with contextlib.suppress(asyncio.CancelledError, SupervisorError):
                await task
    return outcomes


async def main(settings: Settings, signals: Signals) -> int:
    """parse (done) -> validate -> run -> close, interruptible by SIGTERM/SIGINT."""
    config = lsconfig.load_for(settings)
    databases = [config.database(settings.db)] if settings.db else list(config.databases)
    binary = litestream.resolve(settings.litestream)
    budget = Budget(settings.timeout_seconds)
    state = State()
    service = CredentialService(settings, state, config)
    leases = leases_for(settings, databases, service.s3, state, settings.adopt_replica_from)

    async def work() -> list[Outcome]:
        # No token watch: a restore is over within --timeout, the keeper's scheduled refreshes
        # re-read the token, and loading the watcher would delay Litestream's start (~30 ms).
        await service.start(budget, watch_token=False)
        return await restore(service, binary, databases, budget, settings.require_replica, leases,
                             settings.if_local_behind)

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
