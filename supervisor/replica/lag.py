"""Real replication lag: the database's own changes against what is really in the replica.

Litestream's own metrics show nothing during an S3 outage (its txid is local only), so the
probe lists the replica's level-0 LTX files (only keys newer than the last seen) and compares
them with the LTX files Litestream has written locally. And LTX files alone show nothing when
Litestream cannot write them (meta dir full, held back, fenced): so the probe also reads the
database's WAL index and remembers when it first saw each change that no LTX file covers yet.
Lag is the age of the oldest change, staged or not, that the replica does not hold: 0 when
caught up, growing while anything stalls.

The probe gets what it needs handed in (an S3 client per database, "are there credentials",
"are they still valid": with expired ones no listing is sent, since the store could only refuse);
a listing that times out is abandoned and its late answer never applied. When a listing works
again after failures, `on_recovered` asks Litestream to upload now instead of waiting out its
backoff.

How often it looks (drawn waits; faster in an outage, slower while idle, at once on a change to
the database) is supervisor/replica/pace.py.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from supervisor.core.budget import Budget
from supervisor.core.errors import SupervisorError
from supervisor.core.inotify import Inotify, Watch, WatchGone
from supervisor.core.logs import get_logger
from supervisor.core.state import DatabaseState, State
from supervisor.litestream import walfile
from supervisor.litestream.config import Database, LitestreamConfig
from supervisor.replica import layout as replicas
from supervisor.replica import positions
from supervisor.replica.outcome import FinalPosition, has_data
from supervisor.replica.pace import PACE_SPREAD, RECOVERED_SPREAD, failing_wait, next_wait

log = get_logger("lag")
# With nothing new locally the replica cannot fall behind: list it only this often then.
IDLE_RELIST_SECONDS = 60.0
LISTING_TIMEOUT_SECONDS = 30.0
Seen = tuple[int, int, int, float]  # (salt-1, salt-2, WAL end, first seen): a database position


def covered(seen: Seen, coverage: positions.Coverage | None) -> bool:
    """Litestream's newest LTX file holds this position (same WAL generation and read past it, or a
    later generation)."""
    if coverage is None:
        return False
    if (seen[0], seen[1]) == coverage.salts:
        return coverage.wal_end >= seen[2]
    return walfile.generation_after(coverage.salts[0], seen[0])


class LagProbe:
    def __init__(self, s3: Callable[[Database], Any], has_credentials: Callable[[], bool],
                 config: LitestreamConfig, state: State, interval_seconds: float,
                 on_recovered: Callable[[Database, float], Awaitable[None]] | None = None,
                 inotify: Inotify | None = None, credentials_valid: Callable[[], bool] | None = None) -> None:
        self.s3 = s3
        self.has_credentials = has_credentials
        # Credentials held but expired (STS away past their expiry): the store can only refuse a
        # listing, so none is sent; the round still reads the local side, and the lag grows.
        self.credentials_valid = credentials_valid or (lambda: True)
        self.config = config
        self.state = state
        self.interval = interval_seconds
        self.on_recovered = on_recovered
        self.inotify = inotify  # the process's: idle waits end at a change to a database
        self._last_key: dict[str, str | None] = {}
        self._pending: dict[str, deque[Seen]] = {}
        self._change: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.quiet_rounds = 0  # rounds in a row in which nothing changed and nothing waited
        self._watch_warned = False
        self.on_round: Callable[[], Awaitable[None]] | None = None  # after every round (the file check)
        self._seeded: dict[str, str] = {}
        for db in config.databases:
            state.databases.setdefault(db.name, DatabaseState(db.name))

    def _own_changes(self, db: Database, now: float) -> tuple[int, float | None, float | None]:
        """(changes seen, when the last one was seen, since when the oldest unstaged change waits)."""
        current = self.state.databases[db.name]
        position = walfile.read_position(db.path)
        changes, changed_at = current.changes, current.changed_at
        if position is not None:
            before = self._change.get(db.name)
            if before is not None and position.change != before:
                changes += max(1, min((position.change - before) % (1 << 32), 1_000_000))
                changed_at = now
            self._change[db.name] = position.change
        coverage = positions.coverage(db)
        pending = self._pending.setdefault(db.name, deque())
        while pending and covered(pending[0], coverage):
            pending.popleft()
        if positions.beyond(position, coverage):
            assert position is not None
            key = (position.salt1, position.salt2, position.wal_end)
            if not pending or pending[-1][:3] != key:
                pending.append((*key, now))
        else:
            pending.clear()
        return changes, changed_at, pending[0][3] if pending else None

    def _list_newer(self, db: Database, after_key: str | None) -> replicas.RemotePosition | None:
        """Blocking, in a thread: touches nothing shared, so an abandoned call changes nothing."""
        return replicas.remote_position(self.s3(db), db.replica, after_key)

    async def probe(self, db: Database, force: bool = False, timeout_seconds: float = LISTING_TIMEOUT_SECONDS) -> None:
        name = db.name
        current = self.state.databases[name]
        now = time.time()
        local_unknown = False
        changes, changed_at, unstaged_since = self._own_changes(db, now)
        try:
            if not force and current.probe_error is None and current.probe_ok_at is not None \
                    and now - current.probe_ok_at < IDLE_RELIST_SECONDS:
                local = replicas.local_position(db, current.remote_txid)
                if local.txid <= current.remote_txid:
                    self.state.databases[name] = DatabaseState(
                        path=name, local_txid=local.txid, remote_txid=current.remote_txid,
                        lag_seconds=lag_since(unstaged_since, None, now),
                        last_upload_at=current.last_upload_at, probe_ok_at=current.probe_ok_at,
                        changes=changes, changed_at=changed_at, unstaged_since=unstaged_since)
                    return
            remote_txid, last_upload, error = current.remote_txid, current.last_upload_at, None
            if not self.credentials_valid():
                error = (f"{db.replica.location}: not listed: the credentials expired and STS has not given new "
                         "ones yet (see the credentials_* logs)")
            else:
                try:
                    after = self._last_key.get(name) or self._seeded.get(name)
                    found = await asyncio.wait_for(asyncio.to_thread(self._list_newer, db, after), timeout_seconds)
                    if found is None and after is not None and after == self._seeded.get(name):
                        # nothing from the seed on (the newest file deleted meanwhile): list the level whole
                        found = await asyncio.wait_for(asyncio.to_thread(self._list_newer, db, None), timeout_seconds)
                    self._seeded.pop(name, None)
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
            lag_seconds=current.lag_seconds if local_unknown else lag_since(unstaged_since, local.unsent_since, now),
            last_upload_at=last_upload, probe_ok_at=now if error is None else current.probe_ok_at,
            probe_error=error, changes=changes, changed_at=changed_at, unstaged_since=unstaged_since,
        )
        if error and not current.probe_error:
            log.warning("replica_probe_failed", db=name, error=error)
        elif current.probe_error and not error:
            log.info("replica_probe_recovered", db=name)
            if self.on_recovered is not None:  # upload now: Litestream's own backoff may wait ~50 s more
                down = now - (current.probe_ok_at or now)
                task = asyncio.create_task(self.on_recovered(db, down))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    def cancel_pending(self) -> None:
        """At shutdown: no catch-up started by a recovery runs beside the final upload."""
        for task in list(self._tasks):
            task.cancel()

    def seed(self, db: Database, txid: int) -> None:
        """The replica's newest transaction as the start-up check listed it: the first listing asks
        only for level-0 keys from there on (a replica of 10,000 objects costs what one of 10 does)."""
        if txid > 0 and self._last_key.get(db.name) is None:
            self._seeded[db.name] = f"{db.replica.prefix}0000/{txid:016x}"

    def quiet(self) -> bool:
        """Nothing changed in the last round and nothing waits for the replica."""
        return all(d.probe_error is None and d.unstaged_since is None and d.lag_seconds == 0
                   and d.local_txid <= d.remote_txid for d in self.state.databases.values())

    async def run(self, rand: Callable[[float, float], float] = random.uniform) -> None:
        while True:
            before = {name: d.changes for name, d in self.state.databases.items()}
            failing_before = any(d.probe_error for d in self.state.databases.values())
            for db in self.config.databases:
                if self.has_credentials():
                    await self.probe(db)
            if self.on_round is not None:
                await self.on_round()
            changed = any(d.changes != before.get(name) for name, d in self.state.databases.items())
            self.quiet_rounds = self.quiet_rounds + 1 if self.quiet() and not changed else 0
            now = time.time()
            down = max((now - (d.probe_ok_at or now) for d in self.state.databases.values() if d.probe_error),
                       default=None)
            wait = next_wait(self.interval, self.quiet_rounds, down is not None, failing_wait(down or 0.0))
            if down is None and failing_before:
                await asyncio.sleep(self.interval * rand(*RECOVERED_SPREAD))
                continue
            if not self.quiet_rounds:
                await asyncio.sleep(wait if down is not None else wait * rand(*PACE_SPREAD))
                continue
            # idle: the replica is still listed about every IDLE_RELIST_SECONDS
            listed = min((d.probe_ok_at or 0.0 for d in self.state.databases.values()), default=0.0)
            wait = min(wait, max(self.interval, listed + IDLE_RELIST_SECONDS - time.time())) * rand(*PACE_SPREAD)
            started = time.monotonic()
            if await self.changed_within(wait):
                self.quiet_rounds = 0
                # a change: probe now, but never more often than every --lag-interval
                await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))

    def _moved(self) -> bool:
        """A database changed since the last round saw it (its WAL index's change counter)."""
        for db in self.config.databases:
            position = walfile.read_position(db.path)
            if position is not None and position.change != self._change.get(db.name, position.change):
                return True
        return False

    async def changed_within(self, seconds: float) -> bool:
        """True as soon as a database changes; False after `seconds` of none. The watches exist only
        for this wait: a busy database's commits never wake the sidecar otherwise. Without inotify,
        a plain sleep."""
        watches: list[Watch] = []
        try:
            if self.inotify is not None:
                for directory, names in watched(self.config).items():
                    watches.append(self.inotify.watch(directory, names))
        except OSError as e:
            for w in watches:
                w.close()
            watches = []
            if not self._watch_warned:
                self._watch_warned = True
                log.info("db_watch_unavailable", error=str(e), detail="the lag probe keeps its plain interval")
        if not watches:
            await asyncio.sleep(min(seconds, self.interval))
            return False
        waits = [asyncio.ensure_future(w.wait(seconds)) for w in watches]
        try:
            if self._moved():  # between the round and the watch
                return True
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                try:
                    if task.result():
                        return True
                except WatchGone:
                    return True  # the directory went away: look now
            return False  # one timed out: they share the deadline
        finally:
            for task in waits:
                task.cancel()
            for w in watches:
                w.close()

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
                    results.append(FinalPosition(db.name, state.local_txid, remote, has_data(db.path), catch_up_ok,
                                                 positions.unstaged(db)))
                    break
                await asyncio.sleep(min(0.5, budget.left()))
        return results


def lag_since(unstaged_since: float | None, unsent_since: float | None, now: float) -> float:
    """Age of the oldest change not in the replica: not yet staged by Litestream, or staged and not
    uploaded (a pure function)."""
    oldest = min((t for t in (unstaged_since, unsent_since) if t is not None), default=None)
    return 0.0 if oldest is None else max(0.0, now - oldest)


def watched(config: LitestreamConfig) -> dict[Any, frozenset[str]]:
    """Each directory holding databases, and the names in it that matter (the files and WALs)."""
    names: dict[Any, set[str]] = {}
    for db in config.databases:
        names.setdefault(db.path.parent, set()).update({db.path.name, f"{db.path.name}-wal"})
    return {directory: frozenset(wanted) for directory, wanted in names.items()}
