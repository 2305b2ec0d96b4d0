"""Real replication lag: the local LTX position against what is really in the replica.

Litestream's own metrics show nothing during an S3 outage (its txid is local only), so the
probe lists the replica's level-0 LTX files (only keys newer than the last seen) and compares
them with the LTX files Litestream has written locally. Lag is the age of the oldest local LTX
file that the replica does not hold yet: 0 when caught up, growing while uploads stall.

The probe gets what it needs handed in (an S3 client per database, "are there credentials");
a listing that times out is abandoned and its late answer never applied.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from supervisor import replica as replicas
from supervisor.budget import Budget
from supervisor.config import Database, LitestreamConfig
from supervisor.errors import SupervisorError
from supervisor.logs import get_logger
from supervisor.outcome import FinalPosition, has_data
from supervisor.state import DatabaseState, State

log = get_logger("lag")
# With nothing new locally the replica cannot fall behind: list it only this often then.
IDLE_RELIST_SECONDS = 60.0
LISTING_TIMEOUT_SECONDS = 30.0


class LagProbe:
    def __init__(self, s3: Callable[[Database], Any], has_credentials: Callable[[], bool],
                 config: LitestreamConfig, state: State, interval_seconds: float) -> None:
        self.s3 = s3
        self.has_credentials = has_credentials
        self.config = config
        self.state = state
        self.interval = interval_seconds
        self._last_key: dict[str, str | None] = {}
        for db in config.databases:
            state.databases.setdefault(db.name, DatabaseState(db.name))

    def _list_newer(self, db: Database, after_key: str | None) -> replicas.RemotePosition | None:
        """Blocking, in a thread: touches nothing shared, so an abandoned call changes nothing."""
        return replicas.remote_position(self.s3(db), db.replica, after_key)

    async def probe(self, db: Database, force: bool = False, timeout_seconds: float = LISTING_TIMEOUT_SECONDS) -> None:
        name = db.name
        current = self.state.databases[name]
        now = time.time()
        local_unknown = False
        try:
            if not force and current.probe_error is None and current.probe_ok_at is not None \
                    and now - current.probe_ok_at < IDLE_RELIST_SECONDS:
                local = replicas.local_position(db, current.remote_txid)
                if local.txid <= current.remote_txid:
                    self.state.databases[name] = DatabaseState(
                        path=name, local_txid=local.txid, remote_txid=current.remote_txid, lag_seconds=0.0,
                        last_upload_at=current.last_upload_at, probe_ok_at=current.probe_ok_at)
                    return
            remote_txid, last_upload, error = current.remote_txid, current.last_upload_at, None
            try:
                found = await asyncio.wait_for(asyncio.to_thread(self._list_newer, db, self._last_key.get(name)),
                                               timeout_seconds)
                if found is not None:
                    self._last_key[name] = found.key
                    remote_txid, last_upload = max(found.txid, remote_txid), found.last_modified
            except TimeoutError:
                error = f"{db.replica.location}: replica listing took longer than {timeout_seconds:g}s"
            except SupervisorError as e:
                error = str(e)
            local = replicas.local_position(db, remote_txid)
        except OSError as e:  # the meta dir unreadable (permissions): a reason, not a crash
            local_unknown = True
            local, error = replicas.LocalPosition(current.local_txid, None), \
                f"cannot read Litestream's state in {db.meta_dir}: {e.strerror or e}"
            remote_txid, last_upload = current.remote_txid, current.last_upload_at
        now = time.time()
        self.state.databases[name] = DatabaseState(
            path=name, local_txid=local.txid, remote_txid=remote_txid,
            lag_seconds=current.lag_seconds if local_unknown else replicas.lag_seconds(local, now),
            last_upload_at=last_upload, probe_ok_at=now if error is None else current.probe_ok_at,
            probe_error=error,
        )
        if error and not current.probe_error:
            log.warning("replica_probe_failed", db=name, error=error)
        elif current.probe_error and not error:
            log.info("replica_probe_recovered", db=name)

    async def run(self) -> None:
        while True:
            for db in self.config.databases:
                if self.has_credentials():
                    await self.probe(db)
            await asyncio.sleep(self.interval)

    async def final_positions(self, budget: Budget, catch_up_ok: bool,
                              force: asyncio.Event | None = None) -> list[FinalPosition]:
        """After Litestream exited: does the replica hold the newest local position? Retries within the budget."""
        results = []
        for db in self.config.databases:
            while True:
                await self.probe(db, force=True, timeout_seconds=max(0.1, min(LISTING_TIMEOUT_SECONDS, budget.left())))
                state = self.state.databases[db.name]
                stop = budget.spent or (force is not None and force.is_set())
                if state.probe_error is None or stop:
                    remote = state.remote_txid if state.probe_error is None else None
                    results.append(FinalPosition(db.name, state.local_txid, remote, has_data(db.path), catch_up_ok))
                    break
                await asyncio.sleep(min(0.5, budget.left()))
        return results
