"""Litestream driven through its control socket (issue 26), on the real bed: the final upload has
no gap, catch-up after an outage takes seconds, every stall is visible, the app is never blocked,
and a database file replaced under Litestream is followed."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest

from supervisor.core.errors import ExitCode
from tests.bed.pod import Pod, connect, row_ids
from tests.bed.replicas import commit_rows, replica_catches_up, replica_row_ids, restore_and_compare

pytestmark = pytest.mark.bed


class StrictWriter:
    """An app writing with busy_timeout 0: any wait on a lock is a failed commit, counted."""

    def __init__(self, db: Path, interval_seconds: float = 0.02, start: int = 1, autocheckpoint: int = 1000) -> None:
        self.db, self.interval, self.autocheckpoint = db, interval_seconds, autocheckpoint
        self.committed: list[int] = []
        self.commit_times: list[float] = []
        self.failed = 0
        self.failed_at: list[float] = []
        self.next = start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        con = sqlite3.connect(self.db, timeout=0, isolation_level=None)
        con.execute("PRAGMA busy_timeout=0")
        con.execute(f"PRAGMA wal_autocheckpoint={self.autocheckpoint}")
        try:
            while not self._stop.is_set():
                try:
                    con.execute("INSERT INTO rows(id, payload) VALUES (?, ?)", (self.next, os.urandom(64).hex()))
                    self.committed.append(self.next)
                    self.commit_times.append(time.time())
                    self.next += 1
                except sqlite3.OperationalError:
                    self.failed += 1
                    self.failed_at.append(time.time())
                time.sleep(self.interval)
        finally:
            con.close()

    def start(self) -> StrictWriter:
        self._thread.start()
        return self

    def stop(self) -> list[int]:
        self._stop.set()
        self._thread.join(timeout=10)
        return self.committed


def tables(db: Path) -> set[str]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {r[0] for r in con.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
    finally:
        con.close()


def test_an_apps_open_read_transaction_never_holds_replication_back(pod: Pod) -> None:
    """On the code before, Litestream came back only after a TRUNCATE checkpoint, which waits for
    readers: one read transaction the app left open held replication back for as long as it lasted."""
    sup = pod.start_replicate()
    sup.wait_ready()
    writer = connect(pod.db())
    commit_rows(writer, 1, 20)
    reader = sqlite3.connect(pod.db(), isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM rows").fetchone()  # a read transaction, left open
    try:
        os.kill(sup.litestream_pid(), signal.SIGKILL)
        sup.wait_for(lambda: sup.count("litestream_started") == 2, 30, "Litestream back")
        committed = list(range(1, 21)) + commit_rows(writer, 100, 50)
        replica_catches_up(pod, committed, timeout=30)  # while the read transaction is still open
        assert reader.in_transaction
    finally:
        reader.close()
        writer.close()
    assert sup.terminate() == 0, sup.output()[-3000:]
    restore_and_compare(pod, committed)


def test_a_busy_timeout_0_writer_loses_no_commit_through_a_sidecar_restart(pod: Pod) -> None:
    """~50 commits/s with busy_timeout 0 while the sidecar stops and starts again. On the code before,
    the restart's TRUNCATE checkpoint took the writer lock: commits failed (247 of 881 measured)."""
    connect(pod.db()).close()
    sup = pod.start_replicate()
    sup.wait_ready()
    # Litestream creates its own tables in a new database (a write of its own): the app starts after
    sup.wait_for(lambda: "_litestream_seq" in tables(pod.db()), 30, "Litestream's tables")
    writer = StrictWriter(pod.db()).start()
    time.sleep(2)
    # the app writes on while this sidecar stops: what it committed after the final upload cannot
    # be in the replica yet, so exit 10 is as honest as 0 (the next sidecar uploads it)
    assert sup.terminate() in (0, ExitCode.FINAL_SYNC_UNCONFIRMED), sup.output()[-3000:]
    assert sup.count("final_content_unchecked") == 0
    time.sleep(1)
    again = pod.start_replicate()
    again.wait_ready()
    time.sleep(3)
    committed = writer.stop()
    assert writer.failed == 0, f"{writer.failed} commits failed because of the supervisor"
    assert len(committed) > 150
    replica_catches_up(pod, committed, timeout=30)
    assert again.terminate() == 0, again.output()[-3000:]
    restore_and_compare(pod, committed)


def test_the_final_upload_leaves_no_moment_without_a_read_lock(pod: Pod) -> None:
    """An app still writing while the sidecar stops (legacy sidecar mode, or an app slow to stop),
    checkpointing as often as SQLite lets it. Invariant: exit 0 implies every row committed before
    the final position was confirmed is in the replica."""
    sup = pod.start_replicate()
    sup.wait_ready()
    con = connect(pod.db())
    con.execute("PRAGMA wal_autocheckpoint=2")  # a checkpoint attempt at nearly every commit
    con.close()
    stop = threading.Event()
    times: dict[int, float] = {}

    def app() -> None:
        c = sqlite3.connect(pod.db(), timeout=10, isolation_level=None)
        c.execute("PRAGMA wal_autocheckpoint=2")
        i = 1
        while not stop.is_set():
            with contextlib.suppress(sqlite3.OperationalError):
                c.execute("INSERT INTO rows(id, payload) VALUES (?, 'x')", (i,))
                times[i] = time.time()
                i += 1
            time.sleep(0.01)
        c.close()

    thread = threading.Thread(target=app, daemon=True)
    thread.start()
    time.sleep(2)
    rc = sup.terminate()
    stop.set()
    thread.join(5)
    in_replica = replica_row_ids(pod, pod.db())
    staged = [e for e in sup.events() if e.get("event") == "final_sync_done" and e.get("via") == "socket"]
    assert len(staged) == 1  # while the daemon still held its read lock
    # no gap: every row committed before that sync is in the replica, whatever the exit code
    before = {i for i, t in times.items() if t < _ts(staged[0]) - 0.05}
    missing = sorted(before - in_replica)
    assert not missing, f"{len(missing)} rows committed before the final sync are missing, first {missing[:5]}"
    done = [e for e in sup.events() if e.get("event") == "shutdown_done"]
    if rc == 0:  # exit 0: every row committed before the sidecar finished
        missing = sorted({i for i, t in times.items() if t < _ts(done[-1]) - 0.05} - in_replica)
        assert not missing, f"exit 0 but {len(missing)} rows committed before the exit are missing"


def _ts(event: dict[str, object]) -> float:
    import datetime
    return datetime.datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00")).timestamp()


def test_catch_up_after_an_outage_takes_seconds_not_litestreams_backoff(pod: Pod) -> None:
    """10 s of S3 outage under a steady writer. On the code before, the commits made before S3's
    return reached the replica 8.9 to 49.6 s after it (Litestream's own backoff)."""
    with pod.through_forwarder() as fwd:
        sup = pod.start_replicate(env=pod.env(AWS_ENDPOINT_URL_STS=pod.bed.endpoint))
        sup.wait_ready()
        writer = StrictWriter(pod.db(), 0.05)
        connect(pod.db()).close()
        writer.start()
        time.sleep(2)
        fwd.cut()
        time.sleep(10)
        before_return = list(writer.committed)
        fwd.restore()
        back = time.monotonic()
        deadline = back + 30
        while time.monotonic() < deadline and not set(before_return) <= replica_row_ids(pod, pod.db()):
            time.sleep(0.25)
        took = time.monotonic() - back
        print(f"caught up {took:.2f}s after S3 returned")  # the README's figure
        committed = writer.stop()
        assert set(before_return) <= replica_row_ids(pod, pod.db()), "never caught up"
        assert took < 6, f"caught up {took:.1f}s after S3 returned"
        assert sup.count("caught_up") >= 1 and sup.count("litestream_started") == 1  # never restarted
        assert sup.terminate() == 0, sup.output()[-3000:]
    restore_and_compare(pod, committed)


def test_a_full_meta_dir_shows_as_lag_and_a_named_reason_then_catches_up(pod: Pod) -> None:
    """Litestream cannot stage LTX files (0.5.x logs "disk full while staging ltx file" and keeps
    running): on the code before, lag stayed 0 and the alert could not fire."""
    meta = pod.root / "meta"
    meta.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(meta)], check=True)
    try:
        pod.write_config(extra_db=f"    meta-path: {meta}/app")
        sup = pod.start_replicate()
        sup.wait_ready()
        writer = StrictWriter(pod.db(), 0.05)
        connect(pod.db()).close()
        writer.start()
        time.sleep(1)
        filler = meta / "filler"
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k", "count=100"], capture_output=True)
        db = f'{{db="{pod.db()}"}}'
        sup.wait_for(lambda: sup.metric("litestream_supervisor_replication_lag_seconds", db) > 5, 60, "lag grows")
        sup.wait_for(lambda: sup.metric("litestream_supervisor_litestream_errors_total", '{kind="disk_full"}') > 0,
                     60, "Litestream's disk-full line counted")
        status, body = sup.get("/readyz?verbose")
        assert status == 200 and "[!]uploads: " in body and "disk full" in body, body
        changes = sup.metric("litestream_supervisor_db_changes_total", db)
        time.sleep(2)
        assert sup.metric("litestream_supervisor_db_changes_total", db) > changes  # it changes, nothing uploaded
        filler.unlink()
        sup.wait_for(lambda: sup.metric("litestream_supervisor_replication_lag_seconds", db) < 3, 90, "caught up")
        committed = writer.stop()
        replica_catches_up(pod, committed, timeout=60)
        assert sup.terminate() == 0, sup.output()[-3000:]
    finally:
        subprocess.run(["umount", "-l", str(meta)], check=False)
    assert writer.failed == 0


def test_a_database_replaced_under_litestream_is_followed(pod: Pod) -> None:
    """VACUUM INTO + rename: on the code before, Litestream stayed on the old inode, new rows never
    reached the replica, and lag said 0."""
    sup = pod.start_replicate()
    sup.wait_ready()
    first = commit_rows(pod.db(), 1, 30)
    replica_catches_up(pod, first)
    fresh = pod.data / "fresh.db"
    con = sqlite3.connect(pod.db())
    con.execute(f"VACUUM INTO '{fresh}'")
    con.close()
    for suffix in ("-wal", "-shm"):  # the app's own duty: the old file's WAL must not meet the new file
        Path(str(pod.db()) + suffix).unlink(missing_ok=True)
    os.rename(fresh, pod.db())
    con = connect(pod.db())
    con.execute("DELETE FROM rows WHERE id <= 10")
    con.commit()
    committed = [i for i in first if i > 10] + commit_rows(con, 100, 20)
    con.close()
    sup.wait_for(lambda: sup.count("db_replaced") >= 1, 30, "the new file noticed")
    replica_catches_up(pod, committed)
    assert set(range(1, 11)).isdisjoint(replica_row_ids(pod, pod.db()))
    assert sup.terminate() == 0, sup.output()[-3000:]
    restore_and_compare(pod, committed)
    assert set(row_ids(pod.db())) == set(committed)


def test_driving_litestream_through_its_socket_never_costs_it_its_read_lock(pod: Pod) -> None:
    """Litestream 0.5.17 takes its long-running read transaction with the context of whatever sync
    initialises the database or checkpoints it; a socket sync with a timeout gives it the request's
    context, which Go cancels when the request ends, rolling the read lock back. SQLite may then
    checkpoint and restart the WAL under a running Litestream: rows lost while positions agree
    (found by the final content check: 14-18 rows per 25 s under a steady writer, exit 0 before it).
    Here the app is created right after the sidecar is ready (the supervisor's first sync may be the
    one that initialises it), checkpoints every 100 pages itself, and drills ask for syncs every
    2 s: every committed row must reach the replica while it runs, and exit 0."""
    sup = pod.start_replicate("--verify-interval", "2")
    sup.wait_ready()
    writer = StrictWriter(pod.db(), 0.02, autocheckpoint=100)
    connect(pod.db()).close()
    writer.start()
    time.sleep(12)
    committed = writer.stop()
    replica_catches_up(pod, committed, timeout=30)  # every row, while it runs
    rc = sup.terminate()
    assert rc == 0 and sup.count("final_content_verified") == 1, sup.output()[-3000:]
    assert sup.count("drill_failed") == 0
