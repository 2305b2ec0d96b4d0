"""Before Litestream runs: the first credentials (waited for while STS is down or refusing), and
what a stop at that point exits with (0 only when nothing on disk can be missing from the replica).
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from supervisor.core.budget import Budget
from supervisor.core.errors import CredentialsRefused, ExitCode, SupervisorError, TokenError
from supervisor.core.logs import get_logger
from supervisor.core.signals import Signals
from supervisor.identity.service import CredentialService
from supervisor.litestream.config import Database
from supervisor.replica import ondisk
from supervisor.replica.outcome import has_data

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


def unconfirmed_on_disk(db_path: Path, meta_dir: Path) -> bool:
    """Data on disk that no replica is known to hold: written since a restore, or left by an earlier
    Litestream (a sidecar restarted after an OOM kill beside a running app)."""
    if not has_data(db_path):
        return False
    if ondisk.local_position(db_path, meta_dir).source != "restored":
        return True
    wal = db_path.with_name(db_path.name + "-wal")
    return wal.exists() and wal.stat().st_size > 0  # the restored file is untouched, but its WAL is not


def stopped_before_start(databases: tuple[Database, ...], signals: Signals, interrupted_restore: bool) -> int:
    during = "restore" if interrupted_restore else "start-up (credentials, lease, checks)"
    if interrupted_restore:
        log.info("stopped_before_start", signal=signals.first, during=during)
        return int(ExitCode.INTERRUPTED)
    pending = [str(db.path) for db in databases if unconfirmed_on_disk(db.path, db.meta_dir)]
    if pending:
        log.error("stopped_before_start", signal=signals.first, during=during, dbs=pending,
                  detail="Litestream never ran, and these hold data no replica is known to hold "
                         "(written since a restore, or left by an earlier run): not uploaded")
        return int(ExitCode.FINAL_SYNC_UNCONFIRMED)
    log.info("stopped_before_start", signal=signals.first, during=during)
    return int(ExitCode.OK)
