"""The catch-up after an outage (Replicator.catch_up), on the real bed: whatever happens to the
reopen (a close whose final upload cannot finish, a backlog slower than the stop timeout), rows
keep reaching the replica while the sidecar runs; the database is never left closed under a
running Litestream (a node loss would then lose every row since).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.bed.net import Forwarder
from tests.bed.pod import Pod, connect
from tests.bed.replicas import commit_rows, replica_catches_up, replica_row_ids, restore_and_compare

pytestmark = pytest.mark.bed


class ReadsOnlyForwarder(Forwarder):
    """`reads_only`: S3 answers GET/HEAD/LIST but every PUT/POST connection is reset (an RGW bucket
    over quota, a Ceph cluster past its full ratio, a MinIO with a full disk: reads go on, writes fail)."""

    reads_only = False
    upload_bytes_per_second: float | None = None  # a slow uplink: what the pod sends, throttled

    def _pipe(self, src, dst, throttle, answers) -> None:  # type: ignore[no-untyped-def]
        if answers:
            return super()._pipe(src, dst, throttle, answers)
        try:
            while data := src.recv(4096):
                if self.reads_only and data[:5] in (b"PUT /", b"POST "):
                    break
                dst.sendall(data)
                if self.upload_bytes_per_second:
                    time.sleep(len(data) / self.upload_bytes_per_second)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(2)
            with self._lock:
                self._conns.discard(src)


@contextlib.contextmanager
def reads_only_forwarder(pod: Pod) -> Iterator[ReadsOnlyForwarder]:
    fwd = ReadsOnlyForwarder(pod.bed.cluster.rgw_port)
    fwd.start()
    pod.endpoint = fwd.url
    pod.write_config()
    try:
        yield fwd
    finally:
        fwd.stop()
        pod.endpoint = pod.bed.endpoint
        pod.write_config()


def down_then_reads_only(pod: Pod, fwd: ReadsOnlyForwarder, down_seconds: float) -> tuple[Any, Any, list[int]]:
    """A sidecar with a long lease TTL (the time without writes must not fence: a fence restarts
    Litestream and would hide what is tested) replicates 20 rows; S3 is then down `down_seconds`
    under 20 more, and comes back taking reads but not writes. (sidecar, app connection, committed)"""
    sup = pod.start_replicate("--lease-ttl", "150", env=pod.env(AWS_ENDPOINT_URL_STS=pod.bed.endpoint))
    sup.wait_ready()
    app = connect(pod.db())
    committed = commit_rows(app, 1, 20)
    replica_catches_up(pod, committed, timeout=30)
    fwd.cut()
    committed += commit_rows(app, 100, 20)
    time.sleep(down_seconds)
    fwd.reads_only = True
    fwd.restore()
    return sup, app, committed


def test_after_a_catch_up_that_failed_rows_still_reach_the_replica_while_it_runs(pod: Pod) -> None:
    """Invariant: once S3 takes writes again, every committed row reaches the replica while the
    sidecar runs (and reports ready). Here S3 is down 5 s, then takes reads but not writes for 40 s
    (the probe's listing works again: the catch-up runs while uploads still fail), then is fully back."""
    with reads_only_forwarder(pod) as fwd:
        # the default TTL hides the finding only when lease writes fail with the uploads
        sup, app, committed = down_then_reads_only(pod, fwd, 5)
        # the reopen fails in its `stop` (a Litestream running through the outage) or, after a pause,
        # succeeds while Litestream's uploads still fail: either way the catch-up ends
        sup.wait_for(lambda: sup.count("catch_up_restart") + sup.count("caught_up") >= 1, 90,
                     "the catch-up to end")
        time.sleep(10)
        fwd.reads_only = False  # S3 takes writes again
        committed += commit_rows(app, 1000, 20)
        try:
            replica_catches_up(pod, committed, timeout=60)
            missing: list[int] = []
        except AssertionError:
            missing = sorted(set(committed) - replica_row_ids(pod, pod.db()))
        status, _ = sup.get("/readyz")
        app.close()
        rc = sup.terminate()
    assert not missing, (f"S3 took writes again for 60 s while the sidecar said /readyz {status}, yet "
                         f"{len(missing)} committed rows never reached the replica (first {missing[:5]}); "
                         f"shutdown exit {rc}")
    assert rc == 0
    restore_and_compare(pod, committed)


def test_a_backlog_that_takes_more_than_30s_to_upload_does_not_stop_replication(pod: Pod) -> None:
    """The same with default settings and nothing refused: 8 s of outage under a writer of 4 KB rows,
    then an uplink at 25 KB/s, so the backlog needs more than the reopen's 30 s. Invariant: once the
    uplink is fast again, every committed row reaches the replica while the sidecar runs."""
    with reads_only_forwarder(pod) as fwd:
        sup = pod.start_replicate(env=pod.env(AWS_ENDPOINT_URL_STS=pod.bed.endpoint))
        sup.wait_ready()
        app = connect(pod.db())
        committed = commit_rows(app, 1, 5)
        replica_catches_up(pod, committed, timeout=30)
        fwd.cut()
        for i in range(100, 400):  # ~1.2 MB staged while S3 is away
            app.execute("INSERT INTO rows(id, payload) VALUES (?, ?)", (i, os.urandom(4096)))
            app.commit()
            committed.append(i)
        time.sleep(8)
        fwd.upload_bytes_per_second = 25_000
        fwd.restore()
        sup.wait_for(lambda: sup.count("catch_up_restart") >= 1 or sup.count("caught_up") >= 1, 90,
                     "the catch-up to end")
        fwd.upload_bytes_per_second = None
        committed += commit_rows(app, 1000, 20)
        try:
            replica_catches_up(pod, committed, timeout=60)
            missing: list[int] = []
        except AssertionError:
            missing = sorted(set(committed) - replica_row_ids(pod, pod.db()))
        status, _ = sup.get("/readyz")
        failed = sup.count("catch_up_restart")
        app.close()
        rc = sup.terminate()
    assert not missing, (f"{len(missing)} committed rows never reached the replica in the 60 s after the uplink was "
                         f"fast again (first {missing[:5]}); /readyz {status}; catch_up_restart x{failed}; exit {rc}")


def test_a_close_litestream_answers_with_an_error_is_opened_again_not_restarted(pod: Pod) -> None:
    """Issue 29's herd: every Litestream restart after an outage was a `/stop` that Litestream
    answered with an error (its close's final upload failed). Litestream 0.5.15+ closes the
    database all the same, so the reopen goes on with `/start`. Here the close cannot upload (S3
    takes reads, not writes): the real Litestream answers the stop with an error, the start opens
    the database again, Litestream is never restarted, and every row reaches the replica."""
    with reads_only_forwarder(pod) as fwd:
        sup, app, committed = down_then_reads_only(pod, fwd, 6)  # > LONG_OUTAGE_SECONDS: a reopen
        sup.wait_for(lambda: sup.count("caught_up") + sup.count("catch_up_restart") >= 1, 90, "the catch-up")
        refused = [e for e in sup.events() if e.get("event") == "catch_up_stop_refused"]
        fwd.reads_only = False
        committed += commit_rows(app, 1000, 20)
        replica_catches_up(pod, committed, timeout=60)
        starts, restarts = sup.count("litestream_started"), sup.count("catch_up_restart")
        reopened = sup.count("caught_up", how="reopen")
        app.close()
        rc = sup.terminate()
    assert refused and "close database" in str(refused[0].get("error")), refused
    assert (reopened, restarts, starts) == (1, 0, 1), (reopened, restarts, starts)
    assert rc == 0
    restore_and_compare(pod, committed)
