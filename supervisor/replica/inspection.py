"""Looking at a replica before acting on it: its layout, retried through outages and stale
credentials, and (for the sidecar) whether the database on disk may start replicating into it.

restore and replicate both use it: the sidecar checks again what restore checked, because a sidecar
can run without restore (its own pod spec, legacy mode) or after it on a volume put back since.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from supervisor.core.backoff import Backoff
from supervisor.core.budget import Budget
from supervisor.core.errors import ExitCode, LocalBehind, ReplicaVanished, SupervisorError, Unreachable
from supervisor.core.logs import get_logger
from supervisor.identity.service import CredentialService
from supervisor.litestream.config import Database
from supervisor.replica import layout as replicas
from supervisor.replica import ondisk
from supervisor.replica.leaseholder import Lease

log = get_logger("inspection")
RETRY = Backoff(initial_seconds=0.5, max_seconds=10.0)


async def inspect_replica(service: CredentialService, db: Database, budget: Budget) -> replicas.Layout:
    """List the replica prefix, retrying transient failures and refreshing stale credentials."""
    attempt = 0
    refreshed = False
    last: Unreachable | None = None
    where = db.replica.location
    while True:
        try:
            client = service.s3(db)
            async with budget.limit(where):
                found = await asyncio.to_thread(replicas.layout, client, db.replica)
            if found.truncated:
                log.warning("replica_listing_truncated", db=db.name, objects=found.objects,
                            detail="more objects than one look lists: its newest transaction and gaps are not "
                                   "judged here (check the retention settings)")
            return found
        except replicas.StaleCredentials:
            if refreshed:
                raise
            refreshed = True
            await service.keeper.exchange("s3_refused_credentials", budget)
        except SupervisorError as e:
            if e.exit_code == ExitCode.ACCESS_DENIED and not refreshed:
                # RGW answers AccessDenied for lapsed temporary credentials: refresh once first.
                refreshed = True
                await service.keeper.exchange("s3_access_denied", budget)
                continue
            if not isinstance(e, Unreachable):
                raise
            if budget.spent:
                raise budget.gave_up(e, last) from None
            last = e
            attempt += 1
            delay = min(RETRY.delay(attempt), budget.left())
            log.warning("replica_unreachable", db=db.name, error=str(e), retry_in=round(delay, 1))
            await asyncio.sleep(delay)


def behind_lease(found: replicas.Layout, lease_txid: int) -> bool:
    """The replica holds less than its lease recorded as confirmed there: deleted, or missing its
    newest files (a lagging site or zone, a bucket put back from an older copy, a cleanup)."""
    return lease_txid > 0 and found.kind in ("empty", "ltx") and not found.truncated and found.max_txid < lease_txid


def vanished(found: replicas.Layout, lease: Lease | None, where: str) -> None:
    """A replica holding less than its lease saw in it is a deleted or damaged replica: restoring it
    would start the app on old data (or none), and Litestream make that the replica's head."""
    error = vanished_error(found, lease, where)
    if error is not None:
        raise error


def vanished_error(found: replicas.Layout, lease: Lease | None, where: str) -> ReplicaVanished | None:
    if lease is None or not behind_lease(found, lease.replica_txid):
        return None
    holds = "is empty" if found.kind == "empty" else f"holds up to txid {found.max_txid:016x}"
    return ReplicaVanished(
        f"{where} {holds}, but its lease ({lease.store.location}) records txid {lease.replica_txid:016x} confirmed "
        "there: the replica lost its newest files (deleted by a lifecycle rule or a cleanup, a lagging site, a "
        "bucket put back from an older copy?); refusing to start the app on older data: bring the objects back, "
        "or delete the lease object to accept the replica as it is")


@dataclass(frozen=True)
class Look:
    found: replicas.Layout  # the replica, as listed
    verdict: ondisk.Verdict  # may the database on disk stay?


async def look(service: CredentialService, db: Database, budget: Budget, lease: Lease | None,
               restoring: bool) -> Look:
    """restore, with a SQLite file at the db path: the replica, and whether that file may stay. One
    `restoring` it (--if-local-behind restore) is refused here when the replica lost its newest
    files: restoring it would not bring the newer data back."""
    found = await listed(service, db, budget)
    # A replica behind its lease: the local file must be as far as the lease saw, or it is refused.
    kind, txid = expected(found, lease.replica_txid if lease else 0)
    gone = vanished_error(found, lease, db.replica.location)
    verdict = ondisk.judge(ondisk.local_position(db.path, db.meta_dir), kind, txid)
    if gone is not None and restoring and not verdict.keep:
        raise gone
    return Look(found, verdict)


async def to_restore(service: CredentialService, db: Database, budget: Budget, lease: Lease | None,
                     known: replicas.Layout | None) -> replicas.Layout:
    """restore, about to fill the db path: the replica (as `known` already, or listed now), refused
    when it holds less than its lease saw."""
    found = known or await listed(service, db, budget)
    vanished(found, lease, db.replica.location)
    return found


async def listed(service: CredentialService, db: Database, budget: Budget) -> replicas.Layout:
    found = await inspect_replica(service, db, budget)
    log.info("replica_inspected", db=db.name, replica=db.replica.location, layout=found.kind,
             objects=found.objects, description=found.describe())
    return found


def expected(found: replicas.Layout, lease_txid: int) -> tuple[str, int]:
    """What the local database must reach: the replica's newest transaction, or the lease's when
    the replica holds less than its lease saw."""
    if behind_lease(found, lease_txid):
        return "ltx", lease_txid
    return found.kind, found.max_txid


async def check_before_replicating(service: CredentialService, db: Database, budget: Budget,
                                   if_local_behind: str, lease_txid: int = 0) -> int:
    """The sidecar, before Litestream first starts: what is on disk must not be behind the replica
    (Litestream would make it the new head). Raises LocalBehind, unless `keep` was chosen. Returns
    the replica's newest transaction as listed (0: none)."""
    found = await inspect_replica(service, db, budget)
    kind, txid = expected(found, lease_txid)
    if not db.path.exists():
        if kind in ("empty", "v3"):
            return found.max_txid
        raise LocalBehind(f"{db.path} does not exist while {db.replica.location} holds txid {txid:016x}: the app "
                          "would start empty and Litestream make that the replica's new head; run `restore` first "
                          "(the litestream-restore init container)")
    verdict = ondisk.judge(ondisk.local_position(db.path, db.meta_dir), kind, txid)
    if verdict.keep:
        log.info("db_checked", db=db.name, detail=verdict.reason)
        return found.max_txid
    if if_local_behind == "keep":
        log.warning("db_kept_behind_replica", db=db.name, detail=f"--if-local-behind keep: {verdict.reason}; "
                    "it becomes the replica's new head (a rollback)")
        return found.max_txid
    raise LocalBehind(f"{db.path}: refusing to replicate it: {verdict.reason}; Litestream would make it the "
                      "replica's new head and drop what is newer. Run `restore` with --if-local-behind restore "
                      "(moved aside, never deleted) or keep (a rollback), or set --if-local-behind keep here",
                      exit_code=ExitCode.LOCAL_BEHIND)
