"""The lag probe's cost (issue 29): what one probe asks of the store does not grow with the
replica, and an idle sidecar's probe slows down while a change to the database wakes it at once."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import statistics
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from supervisor.core.inotify import Inotify
from supervisor.core.state import DatabaseState, State
from supervisor.litestream.config import Database, LitestreamConfig, Replica
from supervisor.replica import lag, pace
from supervisor.replica.lag import LagProbe
from supervisor.replica.pace import next_wait


class Listing:
    """list_objects_v2 over an in-memory bucket, 1000 keys a page as S3 answers: counts requests
    and the keys they returned."""

    def __init__(self, keys: list[str]) -> None:
        self.keys = sorted(keys)
        self.requests = 0
        self.returned = 0

    def get_paginator(self, _name: str) -> Listing:
        return self

    def paginate(self, Bucket: str, Prefix: str, StartAfter: str = "") -> Any:  # noqa: N803 (botocore's names)
        keys = [k for k in self.keys if k.startswith(Prefix) and k > StartAfter]
        for i in range(0, max(1, len(keys)), 1000):
            self.requests += 1
            page = keys[i:i + 1000]
            self.returned += len(page)
            yield {"IsTruncated": i + 1000 < len(keys),
                   "Contents": [{"Key": k, "LastModified": datetime.now(UTC)} for k in page]}


def replica_keys(objects: int, newest: int) -> list[str]:
    """A replica as Litestream 0.5 leaves it: a few level-0 files up to `newest`, the rest in the
    compacted levels and snapshots."""
    l0 = [f"app/0000/{t:016x}-{t:016x}.ltx" for t in range(max(1, newest - min(objects, 300) + 1), newest + 1)]
    rest = [f"app/{level:04x}/{t:016x}-{t + 1:016x}.ltx" for t in range(objects - len(l0)) for level in (1,)]
    return l0 + rest[:objects - len(l0)]


def probe_for(tmp_path: Path, client: Any, interval: float = 0.05,
              inotify: Inotify | None = None) -> tuple[LagProbe, Database, State]:
    db = Database(tmp_path / "app.db", Replica("b", "app", "http://127.0.0.1:1", "us-east-1", True), tmp_path / "meta")
    (db.meta_dir / "ltx" / "0").mkdir(parents=True)
    config = LitestreamConfig(tmp_path / "ls.yml", {}, (db,))
    state = State()
    return LagProbe(lambda _db: client, lambda: True, config, state, interval, inotify=inotify), db, state


@pytest.mark.parametrize("objects", [10, 10_000])
def test_a_probe_costs_the_same_on_a_replica_of_10_or_10000_objects(tmp_path: Path, objects: int) -> None:
    """Seeded with the start-up check's newest transaction, the first listing and every later one
    ask for level-0 keys from there on: one request, a key or two, whatever the replica holds."""
    newest = 5000
    client = Listing(replica_keys(objects, newest))
    probe, db, state = probe_for(tmp_path, client)
    probe.seed(db, newest)

    async def scenario() -> list[tuple[int, int]]:
        costs = []
        for i in range(5):
            if i == 3:  # Litestream uploads one more file
                client.keys.append(f"app/0000/{newest + 1:016x}-{newest + 1:016x}.ltx")
                client.keys.sort()
            before = (client.requests, client.returned)
            await probe.probe(db, force=True)
            costs.append((client.requests - before[0], client.returned - before[1]))
        return costs

    costs = asyncio.run(scenario())
    assert state.databases[db.name].remote_txid == newest + 1
    assert all(requests == 1 and keys <= 2 for requests, keys in costs), costs


def test_a_seed_past_everything_falls_back_to_the_whole_level(tmp_path: Path) -> None:
    """The seed names a transaction the level no longer holds (deleted meanwhile): the probe lists
    level 0 whole rather than believe the replica empty."""
    client = Listing([f"app/0000/{t:016x}-{t:016x}.ltx" for t in range(1, 8)])
    probe, db, state = probe_for(tmp_path, client)
    probe.seed(db, 50)
    asyncio.run(probe.probe(db, force=True))
    assert state.databases[db.name].remote_txid == 7


def test_the_wait_doubles_while_quiet_and_never_drops_below_the_interval() -> None:
    assert next_wait(5, 0, False, 0.7) == 5
    assert [next_wait(5, n, False, 0.7) for n in range(1, 6)] == [10, 20, 40, 60, 60]
    assert next_wait(5, 3, True, 0.7) == 0.7  # failing: every half second to a second
    assert next_wait(90, 4, False, 0.7) == 90  # an interval above the cap stays as given
    assert next_wait(0.5, 1000, False, 0.7) == pace.IDLE_MAX_INTERVAL_SECONDS


def test_an_idle_probe_slows_down_and_a_commit_wakes_it_at_once(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Before issue 29 the probe ran every --lag-interval forever, idle or not (0.5 s in the
    bench: 120 rounds a minute of file reads for nothing)."""
    monkeypatch.setattr(pace, "IDLE_MAX_INTERVAL_SECONDS", 5.0)
    client = Listing([])
    inotify = Inotify.open()
    assert inotify is not None
    probe, db, state = probe_for(tmp_path, client, interval=0.05, inotify=inotify)
    con = sqlite3.connect(db.path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE t(x)")
    con.commit()
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # as if Litestream had it all: nothing waits
    rounds: list[float] = []
    original = probe.probe

    async def counted(d: Database, force: bool = False, timeout_seconds: float = 30.0) -> None:
        rounds.append(time.monotonic())
        await original(d, force, timeout_seconds)

    monkeypatch.setattr(probe, "probe", counted)

    async def scenario() -> float:
        task = asyncio.create_task(probe.run())
        await asyncio.sleep(1.6)  # at a plain 0.05 s: 32 rounds
        idle_rounds = len(rounds)
        assert idle_rounds <= 8, f"{idle_rounds} rounds in 1.6 s of nothing"
        assert probe.quiet_rounds >= 4
        before = len(rounds)
        t0 = time.monotonic()
        con.execute("INSERT INTO t VALUES (1)")
        con.commit()
        while len(rounds) == before and time.monotonic() - t0 < 3:
            await asyncio.sleep(0.005)
        woke = time.monotonic() - t0
        task.cancel()
        return woke

    woke = asyncio.run(scenario())
    con.close()
    inotify.close()
    assert woke < 0.3, f"the commit was seen {woke:.2f} s later (the wait had grown to ~1 s)"
    assert state.databases[db.name].changes >= 1


def test_a_busy_database_never_wakes_the_sidecar_between_rounds(tmp_path: Path) -> None:
    """The watch on the database exists only while the probe waits idle: a writer committing all
    the time (its WAL written at every commit) costs no wakeup of the event loop between rounds."""
    inotify = Inotify.open()
    assert inotify is not None
    probe, db, _state = probe_for(tmp_path, Listing([]), interval=0.05, inotify=inotify)
    con = sqlite3.connect(db.path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE t(x)")
    woken: list[int] = []

    async def scenario() -> None:
        read = inotify.read

        def counted() -> None:
            woken.append(1)
            read()

        inotify.read = counted  # type: ignore[method-assign]
        task = asyncio.create_task(probe.run())
        for i in range(300):  # ~300 commits a second, never quiet
            con.execute("INSERT INTO t VALUES (?)", (i,))
            await asyncio.sleep(0.003)
        assert probe.quiet_rounds == 0 and not inotify.watches
        task.cancel()

    asyncio.run(scenario())
    con.close()
    inotify.close()
    assert not woken, f"the database's commits woke the sidecar {len(woken)} times"


def test_a_long_outage_is_probed_less_often_and_its_return_seen_spread() -> None:
    """Issue 29: 50 sidecars probing a lost store every 0.5-1 s sent it ~67 requests/s through an
    STS outage (4x the supervisors' steady rate), and all saw its return in one second (84
    supervisor requests in it). Short outages are still seen within a second (issue 26: caught
    up within 3 s of a 10 s outage); from 10 s on, the wait grows with the outage (jittered), up
    to 2.5-5 s."""
    from supervisor.replica.pace import failing_wait

    lo, hi = (lambda a, b: a), (lambda a, b: b)
    assert failing_wait(3, lo) == 0.5 and failing_wait(10, hi) == 1.0
    assert failing_wait(30, lo) == 1.5 and failing_wait(30, hi) == 3.0
    assert failing_wait(600, lo) == 2.5 and failing_wait(600, hi) == 5.0
    # 50 sidecars through a 45 s outage: under 2 listings a second each way less than before
    mid = [failing_wait(d, lambda a, b: (a + b) / 2) for d in range(0, 46)]
    assert sum(1 / w for w in mid[10:]) < 0.5 * sum(1 / 0.75 for _ in mid[10:])


class RoundsDone(Exception):
    pass


def busy_waits_after_a_return(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rounds: int) -> list[float]:
    """The real `run` loop of a sidecar under a writer whose replica just answered again after an
    outage: the seconds it waits between its rounds (the store's requests follow them)."""
    probe, db, state = probe_for(tmp_path, Listing([]), interval=5.0)
    probe.has_credentials = lambda: False  # the rounds' pace is under test, not the listing
    state.databases[db.name] = DatabaseState(db.name, probe_error="s3: unreachable", probe_ok_at=time.time() - 30)
    waits: list[float] = []

    async def writer_and_return() -> None:
        current = state.databases[db.name]
        state.databases[db.name] = DatabaseState(db.name, changes=current.changes + 1, probe_ok_at=time.time())

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) >= rounds:
            raise RoundsDone

    probe.on_round = writer_and_return
    monkeypatch.setattr(lag.asyncio, "sleep", sleep)
    with pytest.raises(RoundsDone):
        asyncio.run(probe.run())
    return waits


def test_fifty_probes_that_saw_the_store_return_together_do_not_stay_in_step(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: every busy round waited exactly --lag-interval, so fifty sidecars that saw a store
    return within the same seconds listed it in the same second every 5 s for good (the herd: a comb
    of 20-25 requests/s and 0-4 between, for minutes after each outage)."""
    random.seed(29)
    starts: list[float] = []
    for i in range(50):
        t = 0.0
        for wait in busy_waits_after_a_return(tmp_path / str(i), monkeypatch, 14):
            t += wait
            starts.append(t)
    per_second = Counter(int(t) for t in starts if 10 <= t < 60)
    assert sum(per_second.values()) >= 50 * 8  # every sidecar kept probing about every 5 s
    assert max(per_second.values()) <= 22, sorted(per_second.items())  # mean 10/s; in step: 50
    waits = busy_waits_after_a_return(tmp_path / "one", monkeypatch, 400)
    assert 2.5 <= waits[0] <= 7.5  # the first wait after the return: anywhere in an interval
    assert all(4.0 <= w <= 6.0 for w in waits[1:]) and 4.9 < statistics.mean(waits[1:]) < 5.1


def test_expired_credentials_send_no_listing_and_the_lag_still_grows(tmp_path: Path) -> None:
    """Before: with the credentials expired (STS away past their expiry) every round still listed
    the replica, which can only refuse them: fifty sidecars sent the store 47-63 listings a second
    through the herd's STS outage. Now no listing goes out until new credentials come; the round
    still reads the local side, so the lag of a waiting commit grows and the return is noticed."""
    client = Listing([])
    probe, db, state = probe_for(tmp_path, client)
    valid = [True]
    probe.credentials_valid = lambda: valid[0]
    recovered: list[float] = []

    async def on_recovered(_db: Database, down: float) -> None:
        recovered.append(down)

    probe.on_recovered = on_recovered
    con = sqlite3.connect(db.path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE t(x)")

    async def scenario() -> None:
        await probe.probe(db, force=True)
        listed = client.requests
        assert listed >= 1 and state.databases[db.name].probe_error is None
        valid[0] = False
        con.execute("INSERT INTO t VALUES (1)")
        (db.meta_dir / "ltx" / "0" / f"{1:016x}-{1:016x}.ltx").write_bytes(b"")  # staged, not uploaded
        for _ in range(4):
            await probe.probe(db)
            await asyncio.sleep(0.05)
        expired = state.databases[db.name]
        assert client.requests == listed, "listed with expired credentials"
        assert expired.probe_error is not None and "credentials expired" in expired.probe_error
        assert expired.lag_seconds >= 0.1 and expired.local_txid == 1 and expired.remote_txid == 0
        valid[0] = True
        await probe.probe(db)
        await asyncio.sleep(0)  # the recovery's catch-up task runs
        assert client.requests == listed + 1 and state.databases[db.name].probe_error is None
        assert len(recovered) == 1

    asyncio.run(scenario())
    con.close()
