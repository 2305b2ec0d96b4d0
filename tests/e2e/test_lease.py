"""One writer per replica, on the real bed (RGW's conditional writes, real Litestream): overlap
hand-off, crash takeover, a race, a lost lease. Pods differ by POD_UID, as in Kubernetes."""

from __future__ import annotations

import datetime
import os
import signal
import time
from pathlib import Path

import pytest

from supervisor.core.errors import ExitCode
from tests.bed.pod import Pod, Supervisor, Writer, connect, row_ids
from tests.bed.replicas import (
    commit_rows,
    forget_local,
    replica_catches_up,
    restore_and_compare,
    role_s3,
    rows_checkpointed_while_litestream_is_away,
)

pytestmark = pytest.mark.bed
TTL = "8"


def second_pod(pod: Pod, root: Path) -> Pod:
    """Another pod (its own uid, token, data dir) on the same replica prefix."""
    root.mkdir()
    return Pod.create(pod.bed, root, prefix=pod.prefix)


def event_time(sup: Supervisor, event: str) -> float:
    for e in sup.events():
        if e.get("event") == event:
            return datetime.datetime.fromisoformat(str(e["timestamp"]).replace("Z", "+00:00")).timestamp()
    raise AssertionError(f"no {event} event:\n" + sup.output()[-3000:])


def lease_holder(pod: Pod) -> str:
    import json
    obj = role_s3(pod).get_object(Bucket=pod.bed.role.bucket, Key=f"{pod.prefix}/app.db.lease")
    return json.loads(obj["Body"].read())["holder"]


def test_overlap_hand_off_loses_no_row(pod: Pod, tmp_path: Path) -> None:
    """A replicates; B's restore waits; A's SIGTERM uploads, then releases; B restores every row."""
    a = pod.start_replicate("--lease-ttl", TTL)
    a.wait_ready()
    writer = Writer(pod.db(), 0.02).start()
    b_pod = second_pod(pod, tmp_path / "b")
    b = b_pod.start("restore", "--lease-ttl", TTL, "--timeout", "120")
    b.wait_for(lambda: b.count("lease_wait") >= 1, 30, "B waiting for A's lease")
    time.sleep(2 * float(TTL))  # far past a TTL: A's renewals keep B out
    assert b.proc.poll() is None and not b_pod.db().exists()
    committed = writer.stop()
    assert a.terminate() == 0, a.output()[-3000:]
    assert b.proc.wait(timeout=60) == 0, b.output()[-3000:]
    released = event_time(a, "lease_released")
    acquired = event_time(b, "lease_acquired")
    assert 0 <= acquired - released < 5, f"hand-off took {acquired - released:.1f}s"
    assert b.count("lease_acquired", how="released") == 1
    assert row_ids(b_pod.db()) == committed  # every row A committed
    assert lease_holder(pod) == f"tests/{b_pod.name}"


def test_crash_takeover_after_the_ttl(pod: Pod, tmp_path: Path) -> None:
    """A (supervisor and Litestream) is SIGKILLed; B takes over after the TTL; A's restart waits for B."""
    a = pod.start_replicate("--lease-ttl", TTL)
    a.wait_ready()
    writer = Writer(pod.db(), 0.02).start()
    time.sleep(3)
    litestream = a.litestream_pid()
    a.proc.kill()
    os.kill(litestream, signal.SIGKILL)
    killed = time.time()
    committed = writer.stop()
    b_pod = second_pod(pod, tmp_path / "b")
    run = b_pod.run("restore", "--lease-ttl", TTL, "--timeout", "60")
    assert run.returncode == 0, run.output[-3000:]
    waited = time.time() - killed
    assert float(TTL) - 2 <= waited <= float(TTL) + 15, f"takeover after {waited:.1f}s with a {TTL}s TTL"
    assert '"how": "expired"' in run.output
    restored = row_ids(b_pod.db())
    assert restored and set(restored) <= set(committed)  # what reached the replica, nothing else
    b = b_pod.start_replicate("--lease-ttl", TTL)
    b.wait_ready()  # adopts its own pod's restore lease at once
    assert b.count("lease_acquired", how="mine") == 1
    # A comes back (a new pod on the same prefix): it must wait for B
    forget_local(pod.db())
    pod.uid = "a-restarted-" + pod.uid
    again = pod.run("restore", "--lease-ttl", TTL, "--timeout", "5")
    assert again.returncode == ExitCode.LEASE_HELD, again.output[-2000:]
    assert b_pod.name in again.output and not pod.db().exists()
    assert b.terminate() == 0


def test_race_exactly_one_writer(pod: Pod, tmp_path: Path) -> None:
    """Two restores, then two replicates, started together on one empty prefix: one proceeds."""
    b_pod = second_pod(pod, tmp_path / "b")
    procs = [p.start("restore", "--lease-ttl", TTL, "--timeout", "6") for p in (pod, b_pod)]
    codes = sorted(s.proc.wait(timeout=60) for s in procs)
    assert codes == [0, ExitCode.LEASE_HELD], [s.output()[-1500:] for s in procs]
    time.sleep(float(TTL) + 2)  # the winning restore's lease expires (its pod never started a sidecar)
    a, b = (p.start_replicate("--lease-ttl", TTL) for p in (pod, b_pod))
    def ready(s: Supervisor) -> bool:
        try:
            return s.get("/readyz")[0] == 200
        except OSError:  # not listening yet
            return False

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(ready(s) for s in (a, b)):
        time.sleep(0.2)
    time.sleep(2)
    assert sum(ready(s) for s in (a, b)) == 1
    winner, loser = (a, b) if ready(a) else (b, a)
    win_pod, lose_pod = (pod, b_pod) if winner is a else (b_pod, pod)
    status, body = loser.get("/readyz?verbose")
    assert status == 503 and "[-]lease failed" in body and win_pod.name in body
    w1 = Writer(win_pod.db(), 0.02).start()
    w2 = Writer(lose_pod.db(), 0.02)
    w2.committed.extend(range(0, 100_000))  # its ids start at 100001: tell the two apart
    w2.start()
    time.sleep(4)
    committed_winner, committed_loser = w1.stop(), w2.stop()
    assert loser.count("litestream_started") == 0  # the other pod never ran Litestream
    # ...and its app's rows are in no replica: not exit 0 (issue 25: exit 0 means every committed row
    # is in the replica)
    assert loser.terminate() == ExitCode.FINAL_SYNC_UNCONFIRMED and winner.terminate() == 0
    restored = b_pod.root / "check"
    restored.mkdir()
    checker = Pod.create(pod.bed, restored, prefix=pod.prefix)
    run = checker.run("restore", "--lease-ttl", TTL)
    assert run.returncode == 0, run.output[-2000:]
    ids = set(row_ids(checker.db()))
    assert ids == set(committed_winner) and not ids & set(committed_loser[100_000:])


def test_lost_lease_uploads_nothing_more_and_exits_15(pod: Pod, tmp_path: Path) -> None:
    """A's S3 path is cut past the TTL; B takes over; when A's path returns it uploads nothing."""
    with pod.through_forwarder() as fwd:
        a = pod.start_replicate("--lease-ttl", TTL, env=pod.env(AWS_ENDPOINT_URL_STS=pod.bed.endpoint))
        a.wait_ready()
        wa = Writer(pod.db(), 0.02).start()
        time.sleep(2)
        fwd.cut()
        cut_at = len(wa.committed)
        a.wait_for(lambda: a.count("lease_fenced") >= 1, 30, "A fenced")
        assert a.get("/readyz")[0] == 503
        b_pod = second_pod(pod, tmp_path / "b")
        run = b_pod.run("restore", "--lease-ttl", TTL, "--timeout", "60")
        assert run.returncode == 0, run.output[-3000:]
        b = b_pod.start_replicate("--lease-ttl", TTL)
        b.wait_ready()
        wb = Writer(b_pod.db(), 0.02)
        wb.committed.extend(range(0, 1_000_000))
        wb.start()
        time.sleep(2)
        fwd.restore()  # A's path is back: its renewal finds B's lease
        rc = a.proc.wait(timeout=60)
        a_committed = wa.stop()
    assert rc == ExitCode.LEASE_LOST, a.output()[-3000:]
    assert a.count("lease_lost") == 1 and a.count("final_sync_done") == 0
    b_committed = wb.stop()[1_000_000:]
    assert b.terminate() == 0, b.output()[-3000:]
    forget_local(b_pod.db())
    final = b_pod.run("restore", "--lease-ttl", TTL)
    assert final.returncode == 0, final.output[-2000:]
    ids = set(row_ids(b_pod.db()))
    assert set(b_committed) <= ids  # B's rows all there
    late = set(a_committed[cut_at + 100:])  # A's rows written well after its path was cut
    assert late and not ids & late  # A uploaded none of them


def test_a_fenced_pod_that_confirms_its_lease_again_replicates_every_row(pod: Pod) -> None:
    """S3 cut past the fence time: Litestream is SIGKILLed while the app commits and checkpoints
    (the CI failure: 404 rows lost, exit 0). The supervisor holds the WAL meanwhile, so when the lease
    is confirmed again Litestream continues where it was and the replica gets every row."""
    with pod.through_forwarder() as fwd:
        sup = pod.start_replicate("--lease-ttl", TTL, env=pod.env(AWS_ENDPOINT_URL_STS=pod.bed.endpoint))
        sup.wait_ready()
        app = connect(pod.db())
        try:
            def fence() -> None:
                fwd.cut()
                sup.wait_for(lambda: sup.count("lease_fenced") >= 1, 30, "fenced")

            committed, completed = rows_checkpointed_while_litestream_is_away(pod, app, fence)
            # the supervisor held the WAL for the fenced Litestream: SQLite could not restart it
            assert not completed
            fwd.restore()
            sup.wait_for(lambda: sup.count("litestream_started") == 2, 60, "Litestream resumed")
            committed += commit_rows(app, 5000, 5)
            replica_catches_up(pod, committed)
            assert sup.count("snapshot_requested") == 0  # nothing to repair: the WAL never restarted
        finally:
            app.close()
        assert sup.terminate() == 0, sup.output()[-3000:]
    restore_and_compare(pod, committed)


def test_check_names_the_lease_holder(pod: Pod) -> None:
    sup = pod.start_replicate("--lease-ttl", TTL)
    sup.wait_ready()
    run = pod.run("check")
    assert run.returncode == 0, run.output
    assert f"[ok]   lease      s3://{pod.bed.role.bucket}/{pod.prefix}/app.db.lease: held by tests/{pod.name}" \
        in run.output
    assert sup.terminate() == 0
    assert "released by" in pod.run("check").output


def test_lease_off_is_loud(pod: Pod) -> None:
    run = pod.run("restore", "--lease", "off")
    assert run.returncode == 0 and '"lease_disabled"' in run.output
