"""Real replication lag: the local LTX position against what is really in the replica.

Litestream's own metrics show nothing during an S3 outage (its txid is local only), so the
probe lists the replica's level-0 LTX files (only keys newer than the last seen) and compares
them with the LTX files Litestream has written locally. Lag is the age of the oldest local LTX
file that the replica does not hold yet: 0 when caught up, growing while uploads stall.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from supervisor import replica as replicas
from supervisor.config import Database, LitestreamConfig
from supervisor.errors import SupervisorError
from supervisor.logs import get_logger
from supervisor.service import CredentialService
from supervisor.state import DatabaseState, State

log = get_logger("lag")
# With nothing new locally the replica cannot fall behind: list it only this often then.
IDLE_RELIST_SECONDS = 60.0


@dataclass(frozen=True)
class FinalPosition:
    db: str
    local_txid: int
    remote_txid: int | None  # None: the replica could not be read

    db_has_data: bool = True

    @property
    def confirmed(self) -> bool:
        if self.local_txid == 0 and self.db_has_data:
            return False  # a database Litestream never saw: nothing proves it reached the replica
        return self.remote_txid is not None and self.remote_txid >= self.local_txid


class LagProbe:
    def __init__(self, service: CredentialService, config: LitestreamConfig, state: State,
                 interval_seconds: float) -> None:
        self.service = service
        self.config = config
        self.state = state
        self.interval = interval_seconds
        self._last_key: dict[str, str | None] = {}
        self._raw = {str(db.path): raw for db, raw in zip(config.databases, config.raw.get("dbs", []), strict=False)}
        for db in config.databases:
            state.databases.setdefault(str(db.path), DatabaseState(str(db.path)))

    def _remote(self, db: Database) -> tuple[int, float | None]:
        """Blocking: newest remote txid and its upload time (from the last known, listing only newer keys)."""
        name = str(db.path)
        current = self.state.databases[name]
        position = replicas.remote_position(self.service.s3(db), db.replica, self._last_key.get(name))
        if position is None:
            return current.remote_txid, current.last_upload_at
        self._last_key[name] = position.key
        return max(position.txid, current.remote_txid), position.last_modified

    async def probe(self, db: Database, force: bool = False) -> None:
        name = str(db.path)
        current = self.state.databases[name]
        now = time.time()
        if not force and current.probe_error is None and current.probe_ok_at is not None \
                and now - current.probe_ok_at < IDLE_RELIST_SECONDS:
            local = replicas.local_position(db, current.remote_txid, self._raw.get(name))
            if local.txid <= current.remote_txid:
                self.state.databases[name] = DatabaseState(
                    path=name, local_txid=local.txid, remote_txid=current.remote_txid, lag_seconds=0.0,
                    last_upload_at=current.last_upload_at, probe_ok_at=current.probe_ok_at)
                return
        try:
            remote_txid, last_upload = await asyncio.wait_for(asyncio.to_thread(self._remote, db), 30)
            error = None
        except (TimeoutError, SupervisorError) as e:
            remote_txid, last_upload = current.remote_txid, current.last_upload_at
            error = str(e) or "replica listing timed out"
        local = replicas.local_position(db, remote_txid, self._raw.get(name))
        now = time.time()
        self.state.databases[name] = DatabaseState(
            path=name, local_txid=local.txid, remote_txid=remote_txid,
            lag_seconds=replicas.lag_seconds(local, now), last_upload_at=last_upload,
            probe_ok_at=now if error is None else current.probe_ok_at, probe_error=error,
        )
        if error and not current.probe_error:
            log.warning("replica_probe_failed", db=name, error=error)
        elif current.probe_error and not error:
            log.info("replica_probe_recovered", db=name)

    async def run(self) -> None:
        while True:
            for db in self.config.databases:
                if self.service.keeper.current is not None:
                    await self.probe(db)
            await asyncio.sleep(self.interval)

    async def final_positions(self, timeout_seconds: float) -> list[FinalPosition]:
        """After Litestream exited: does the replica hold the newest local position? Retries briefly."""
        deadline = time.monotonic() + timeout_seconds
        results = []
        for db in self.config.databases:
            name = str(db.path)
            while True:
                await self.probe(db, force=True)
                state = self.state.databases[name]
                has_data = db.path.exists() and db.path.stat().st_size > 0
                if state.probe_error is None:
                    results.append(FinalPosition(name, state.local_txid, state.remote_txid, has_data))
                    break
                if time.monotonic() >= deadline:
                    results.append(FinalPosition(name, state.local_txid, None, has_data))
                    break
                await asyncio.sleep(0.5)
        return results
