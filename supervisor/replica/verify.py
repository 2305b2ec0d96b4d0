"""Verify, don't trust: restore the replica into scratch space, check it, compare it with the database.

Positions can agree while rows are missing (Litestream 0.5.17 has written such replicas here), and
0.5.x LTX files carry no end-state checksum, so a replica cannot vouch for itself. The only proof
is a restore, and a comparison of its content with the database it came from, read-only:

1. settle: a moment when Litestream has staged exactly what the database holds (its newest LTX
   file ends where the WAL's committed frames end); the database's pages are read there, inside a
   read transaction (supervisor/replica/pages.py), and that LTX file's transaction ID is the point to
   compare at. The sidecar asks Litestream for a local sync first (its socket), which makes such a
   moment likely even under steady writes; a database that keeps changing is "not compared".
2. the replica must hold that transaction (uploaded), then it is restored at exactly that point
   (`litestream restore -txid`) into the scratch directory, after a free-space check;
3. PRAGMA integrity_check, then a page-by-page comparison: the outcome names what differed
   (page counts, the first differing page, row counts per table when cheap), never data.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets as random_secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor.core.budget import Budget
from supervisor.core.errors import ExitCode, RestoreFailed, RestoreTimeout, SupervisorError
from supervisor.core.logs import get_logger
from supervisor.identity.service import CredentialService
from supervisor.litestream import ltx, sqlitedb
from supervisor.litestream.config import Database
from supervisor.litestream.control import Control, ControlError
from supervisor.litestream.process import low_priority
from supervisor.replica import layout as replicas
from supervisor.replica import pages, positions
from supervisor.replica.inspection import inspect_replica

log = get_logger("verify")
SETTLE_POLL_SECONDS = 0.2
SPACE_MARGIN_BYTES = 16 << 20
RESULT_CODES = {
    "verified": ExitCode.OK,
    "unrestorable": ExitCode.VERIFY_UNRESTORABLE,
    "integrity_failed": ExitCode.VERIFY_INTEGRITY,
    "differs": ExitCode.VERIFY_DIFFERS,
    "not_compared": ExitCode.VERIFY_NOT_COMPARED,
}


@dataclass(frozen=True)
class Verification:
    db: str
    result: str  # verified | unrestorable | integrity_failed | differs | not_compared
    txid: int | None = None
    bytes: int = 0
    seconds: float = 0.0
    compared: bool = False
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.result == "verified"


class ScratchShort(SupervisorError):
    exit_code = ExitCode.VERIFY_NO_SPACE


def _size_estimate(client: Any, replica: Any) -> int:
    """The restored database's size: the newest LTX file's page count times its page size."""
    newest = replicas.newest_ltx_key(client, replica)
    if newest is None:
        return 0
    try:
        head = client.get_object(Bucket=replica.bucket, Key=newest, Range=f"bytes=0-{ltx.HEADER_SIZE - 1}")
        header = ltx.Header.decode(head["Body"].read())
    except Exception as e:  # noqa: BLE001 (explained)
        raise replicas.explain(e, replica) from None
    return header.commit * header.page_size


class Verifier:
    def __init__(self, service: CredentialService, binary: str, config_path: Path, scratch_dir: Path | None,
                 control: Control | None = None, gentle: bool = False) -> None:
        self.service = service
        self.binary = binary
        self.config_path = config_path
        self.scratch_dir = scratch_dir  # None: each database's own directory (its volume has room for it)
        self.control = control  # the sidecar's Litestream: asked for a local sync to settle
        self.gentle = gentle  # a drill: lowest CPU and idle I/O priority

    async def settle(self, db: Database, budget: Budget) -> tuple[pages.LiveSnapshot, int] | None:
        """The database's pages at a moment Litestream has staged exactly them, and that LTX file's
        transaction ID; None when the database never held still within the budget."""
        with_counts = db.path.stat().st_size <= pages.SMALL_FOR_COUNTS
        while not budget.spent:
            if self.control is not None:
                with contextlib.suppress(ControlError, TimeoutError):
                    await self.control.stage(db.path, timeout_seconds=min(5.0, max(1.0, budget.left())))
            try:
                snapshot = await asyncio.to_thread(pages.live, db.path, with_counts)
            except pages.Unsettled:
                await asyncio.sleep(min(SETTLE_POLL_SECONDS, budget.left()))
                continue
            covered = positions.coverage(db)
            if covered is not None and at_coverage(snapshot, covered):
                return snapshot, covered.txid
            await asyncio.sleep(min(SETTLE_POLL_SECONDS, budget.left()))
        return None

    async def uploaded(self, db: Database, txid: int, budget: Budget) -> bool:
        """Until the replica holds `txid`, seen from the replica's side (Litestream uploads within its
        sync interval; a socket sync -wait would endanger its read lock: supervisor/litestream/control.py)."""
        while not budget.spent:
            async with budget.limit(db.replica.location):
                found = await asyncio.to_thread(replicas.layout, self.service.s3(db), db.replica)
            if found.max_txid >= txid:
                return True
            await asyncio.sleep(min(1.0, budget.left()))
        return False

    def scratch_for(self, db: Database) -> Path:
        return self.scratch_dir or db.path.parent

    def check_space(self, db: Database, size: int) -> None:
        scratch = self.scratch_for(db)
        scratch.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(scratch).free
        if free < size + SPACE_MARGIN_BYTES:
            raise ScratchShort(f"--scratch-dir {scratch}: {free / 1e6:.0f} MB free, restoring {db.name} "
                               f"needs about {(size + SPACE_MARGIN_BYTES) / 1e6:.0f} MB (point --scratch-dir at a "
                               "larger volume)")

    async def run(self, db: Database, budget: Budget, *, compare: bool, txid: int | None = None,
                  timestamp: str | None = None, settle_seconds: float | None = None) -> Verification:
        """Restore (at `txid`/`timestamp`, or where the comparison needs it), check, compare.
        `settle_seconds`: how long to wait for a still moment (the rest of the budget restores)."""
        started = time.monotonic()
        found = await inspect_replica(self.service, db, budget)  # unreachable, denied: raised, not "unrestorable"
        if found.kind == "empty":
            return Verification(db.name, "unrestorable", None, 0, time.monotonic() - started, False,
                                f"{db.replica.location} is empty: nothing to restore")
        if found.gap and (txid is None or txid > found.restorable_to):
            return Verification(db.name, "unrestorable", txid, 0, time.monotonic() - started, False,
                                f"the replica is incomplete: {found.gap}")
        snapshot = None
        not_compared: str | None = None  # why the content was not compared, when it was asked for
        if compare:
            window = budget.sub(settle_seconds) if settle_seconds is not None else budget
            settled = await self.settle(db, window)
            if settled is None:
                not_compared = "the database kept changing (never at a position Litestream had staged)"
            else:
                snapshot, txid = settled
                if not await self.uploaded(db, txid, window):
                    snapshot = None
                    not_compared = f"the replica did not get transaction {txid:016x} within the time given"
        async with budget.limit(db.replica.location):
            size = await asyncio.to_thread(_size_estimate, self.service.s3(db), db.replica)
        self.check_space(db, size)
        tmp = self.scratch_for(db) / f".{db.path.name}.verify-{random_secrets.token_hex(4)}"
        at: dict[str, Any] = {"txid": txid} if txid is not None else {"timestamp": timestamp} if timestamp else {}
        try:
            failed = await self.restore(db, tmp, budget, at)
            if failed is not None:
                return Verification(db.name, "unrestorable", txid, 0, time.monotonic() - started, False, failed)
            if not tmp.exists():
                return Verification(db.name, "unrestorable", txid, 0, time.monotonic() - started, False,
                                    "litestream restore wrote nothing")
            restored = tmp.stat().st_size
            try:
                await asyncio.to_thread(sqlitedb.check, tmp)
            except RestoreFailed as e:
                return Verification(db.name, "integrity_failed", txid, restored, time.monotonic() - started, False,
                                    str(e).replace(str(tmp), "the restored replica"))
            if snapshot is None:
                if not_compared is not None:
                    return Verification(db.name, "not_compared", txid, restored, time.monotonic() - started, False,
                                        f"restored and intact, content not compared: {not_compared}")
                return Verification(db.name, "verified", txid, restored, time.monotonic() - started, False,
                                    "restored and intact (content not compared)")
            replica_pages = await asyncio.to_thread(pages.of_file, tmp, snapshot.digests.counts is not None)
            difference = pages.compare(snapshot.digests, replica_pages)
            return Verification(db.name, "verified" if difference.same else "differs", txid, restored,
                                time.monotonic() - started, True, difference.detail)
        finally:
            for leftover in tmp.parent.glob(tmp.name + "*"):
                leftover.unlink(missing_ok=True)


    async def restore(self, db: Database, tmp: Path, budget: Budget, at: dict[str, Any]) -> str | None:
        """Litestream's restore into `tmp`: None, or why the replica did not restore. A failure is
        the replica's only when it fails again after the replica answered a listing: an S3 or STS
        blip in the middle of a download raises (not a data failure, never paged as one)."""
        from supervisor.replica.litestream_restore import run_litestream_restore  # only where a verification runs

        for attempt in (1, 2):
            try:
                await run_litestream_restore(self.service, self.binary, self.config_path, db, tmp, budget,
                                             at=at, preexec=low_priority if self.gentle else None)
                return None
            except RestoreTimeout:
                raise
            except RestoreFailed as e:
                for leftover in tmp.parent.glob(tmp.name + "*"):
                    leftover.unlink(missing_ok=True)
                if attempt == 2:
                    return str(e)
                log.warning("verify_restore_retry", db=db.name, error=str(e),
                            detail="restore failed; the replica is listed again and the restore retried once")
                await inspect_replica(self.service, db, budget)  # unreachable or denied: raised
        return None


def at_coverage(snapshot: pages.LiveSnapshot, covered: positions.Coverage) -> bool:
    """The snapshot is exactly what Litestream's newest LTX file brings the replica to (pure):
    the WAL's committed frames end where Litestream read to, or the WAL was copied whole and
    restarted empty (Litestream's read lock makes it read everything before that)."""
    position = snapshot.position
    if position.frames == 0:
        return True
    return (position.salt1, position.salt2) == covered.salts and position.wal_end == covered.wal_end


def line(v: Verification, where: str) -> str:
    """One line for a person: the database, the outcome, what differed (never data)."""
    tag = "[ok]  " if v.ok else "[FAIL]"
    at = f" at txid {v.txid:016x}" if v.txid is not None else ""
    size = f", {v.bytes / 1e6:.1f} MB" if v.bytes else ""
    return f"{tag} {v.db} <- {where}: {v.result}{at}{size}, {v.seconds:.1f}s; {v.detail}"


def exit_code(results: list[Verification]) -> int:
    """The worst outcome decides (unrestorable before integrity before differs before not compared)."""
    order = ["unrestorable", "integrity_failed", "differs", "not_compared"]
    for result in order:
        if any(v.result == result for v in results):
            return int(RESULT_CODES[result])
    return int(ExitCode.OK)


async def main(settings: Any, signals: Any) -> int:
    """`verify`: parse (done) -> validate -> run -> close."""
    import tempfile

    import click

    from supervisor.core.state import State
    from supervisor.litestream import binary as litestream
    from supervisor.litestream import config as lsconfig

    config = lsconfig.load_for(settings)
    databases = [config.database(settings.db)] if settings.db else list(config.databases)
    binary = litestream.resolve(settings.litestream)
    options = settings.verify
    budget = Budget(settings.timeout_seconds)
    service = CredentialService(settings, State(), config, read_only=True)
    scratch = options.scratch_dir or Path(tempfile.gettempdir())
    try:
        await service.start(budget, watch_token=False)
        verifier = Verifier(service, binary, service.child_config(), scratch)
        results = []
        for db in databases:
            result = await verifier.run(db, budget, compare=options.compare, txid=options.txid,
                                        timestamp=options.timestamp)
            log.info("verified" if result.ok else "verify_failed", db=db.name, result=result.result,
                     txid=f"{result.txid:016x}" if result.txid is not None else None, bytes=result.bytes,
                     seconds=round(result.seconds, 2), compared=result.compared, detail=result.detail)
            click.echo(line(result, db.replica.location))
            results.append(result)
    finally:
        await service.close()
    return exit_code(results)
