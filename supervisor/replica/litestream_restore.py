"""`litestream restore` run as a child with the pod's credentials: its output relayed (or held), its
progress logged while it downloads, bounded by the caller's budget. `restore` and the drills use it.
"""

from __future__ import annotations

import asyncio
import glob
import time
from collections import deque
from pathlib import Path
from typing import Any

from supervisor.core.budget import Budget
from supervisor.core.errors import RestoreFailed, RestoreTimeout
from supervisor.core.logs import get_logger
from supervisor.core.redact import secrets
from supervisor.identity.service import CredentialService
from supervisor.litestream import binary as litestream
from supervisor.litestream import process
from supervisor.litestream.config import Database

log = get_logger("restore")
PROGRESS_INTERVAL_SECONDS = 5.0


class HeldLog:
    """Litestream's lines, held back until we know the replica is one to restore: on an empty
    prefix its "no matching backup files" must not reach the log of a normal fresh start."""

    def __init__(self) -> None:
        self.held: list[tuple[str, tuple[Any, ...], dict[str, Any]]] | None = []

    def __getattr__(self, level: str) -> Any:
        def emit(*args: Any, **kwargs: Any) -> None:
            if self.held is None:
                getattr(log, level)(*args, **kwargs)
            else:
                self.held.append((level, args, kwargs))
        return emit

    def release(self) -> None:
        held, self.held = self.held or [], None
        for level, args, kwargs in held:
            getattr(log, level)(*args, **kwargs)


async def run_litestream_restore(service: CredentialService, binary: str, config_path: Path,
                                 db: Database, tmp: Path, budget: Budget, relay_log: Any = log,
                                 at: dict[str, Any] | None = None, preexec: Any = None) -> None:
    """`at`: txid= or timestamp= (verify); `preexec`: run in the child before exec (low priority)."""
    cmd = litestream.restore_cmd(binary, config_path, db.path, tmp, **(at or {}))
    proc = await process.spawn(cmd, service.child_environment(), preexec=preexec)
    tail: deque[str] = deque(maxlen=5)
    started = time.monotonic()

    def written() -> int:
        return sum(p.stat().st_size for p in tmp.parent.glob(glob.escape(tmp.name) + "*") if p.is_file())

    async def progress() -> None:
        # Litestream prints nothing while it downloads: say how far it got, every few seconds.
        while True:
            await asyncio.sleep(PROGRESS_INTERVAL_SECONDS)
            log.info("restore_progress", db=db.name, bytes_written=written(),
                     seconds=round(time.monotonic() - started), timeout_left=round(budget.left()))

    assert proc.stdout is not None
    relay_task = asyncio.create_task(process.relay(proc.stdout, relay_log, {"db": db.name}, tail, secrets.redact))
    progress_task = asyncio.create_task(progress())
    try:
        try:
            rc = await asyncio.wait_for(proc.wait(), budget.left())
        except TimeoutError:
            seconds = time.monotonic() - started
            so_far = written()
            raise RestoreTimeout(
                f"restore of {db.path} did not finish within {budget.option} {budget.seconds:g}s: "
                f"{so_far / 1e6:.1f} MB written in {seconds:.0f}s ({so_far / 1e6 / max(seconds, 0.001):.2f} MB/s); "
                f"the replica answers but the download needs longer: raise {budget.option}") from None
        await relay_task
    finally:
        await process.kill(proc)
        relay_task.cancel()
        progress_task.cancel()
    if rc != 0:
        last = tail[-1] if tail else "no output"
        raise RestoreFailed(f"litestream restore of {db.path} exited {rc}: {last}")
