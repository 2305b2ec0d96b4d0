"""Verify, don't trust (issue 27), on the real bed: a replica that lost rows while its positions
agree, one with objects deleted, one with a corrupted object, and a healthy one under steady writes;
the sidecar's drills and its final content check."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from supervisor.core.errors import ExitCode
from tests.bed.pod import Pod, Supervisor, Writer, connect
from tests.bed.replicas import (
    bare_env,
    commit_rows,
    make_db,
    replica_catches_up,
    role_s3,
    rows_checkpointed_while_litestream_is_away,
)
from tests.bed.testbed import litestream_binary

pytestmark = pytest.mark.bed


def lossy_replica(pod: Pod) -> object:
    """The WAL-restart hazard with bare Litestream 0.5.17 (DESIGN 8): 100 rows replicated, Litestream
    killed, 300 commits and a completed PASSIVE checkpoint on the app's open connection, 5 commits,
    Litestream back for a few seconds. The database holds 405 rows, a restore of the replica 100.
    Returns the app's connection (kept open, as an app keeps it: its close would checkpoint)."""
    config = ["-config", str(pod.config)]
    app = connect(pod.db())
    app.execute("PRAGMA wal_autocheckpoint=0")
    ls = subprocess.Popen([litestream_binary(), "replicate", *config], env=bare_env(pod),
                          stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    time.sleep(1.5)
    commit_rows(app, 1, 100)
    time.sleep(3)
    ls.kill()
    ls.wait()
    commit_rows(app, 1000, 300)
    busy, frames, backfilled = app.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    assert busy == 0 and frames == backfilled
    commit_rows(app, 1300, 5)
    ls = subprocess.Popen([litestream_binary(), "replicate", *config], env=bare_env(pod),
                          stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    time.sleep(5)
    ls.send_signal(signal.SIGTERM)
    ls.wait(30)
    return app


def test_verify_compare_names_a_replica_that_lost_rows_with_agreeing_positions(pod: Pod) -> None:
    """On the code before: no way to tell; positions agree, restore "works", 305 rows are gone."""
    app = lossy_replica(pod)
    try:
        plain = pod.run("verify", "--timeout", "60")
        assert plain.returncode == 0, plain.output[-2000:]  # restorable and intact: only content tells
        run = pod.run("verify", "--compare", "--timeout", "60")
    finally:
        app.close()
    assert run.returncode == ExitCode.VERIFY_DIFFERS, run.output[-3000:]
    (line,) = [x for x in run.output.splitlines() if x.startswith("[FAIL]")]
    assert str(pod.db()) in line and "differs" in line and "rows: 405 on disk, 100 in the replica" in line.replace(
        "rows rows", "rows"), line


def test_a_replica_with_objects_deleted_is_unrestorable(pod: Pod) -> None:
    """A lifecycle rule gone wrong: everything but the newest LTX file is gone."""
    make_db(pod.db(), 200)
    sup = pod.start_replicate("--verify-interval", "0")
    sup.wait_ready()
    committed = list(range(1, 201)) + commit_rows(pod.db(), 1000, 20)
    replica_catches_up(pod, committed)
    committed += commit_rows(pod.db(), 2000, 20)
    replica_catches_up(pod, committed)
    assert sup.terminate() == 0
    s3 = role_s3(pod)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=pod.bed.role.bucket, Prefix=f"{pod.prefix}/app.db/")
            ["Contents"]]
    # the newest transaction's own level-0 file (not a snapshot, which would hold everything)
    newest = max((k for k in keys if "/0000/" in k), key=lambda k: k.split("/")[-1])
    assert not newest.split("/")[-1].startswith("0000000000000001-"), keys
    for key in keys:
        if key != newest:
            s3.delete_object(Bucket=pod.bed.role.bucket, Key=key)
    run = pod.run("verify", "--timeout", "60")
    assert run.returncode in (ExitCode.VERIFY_UNRESTORABLE, ExitCode.VERIFY_INTEGRITY), run.output[-2000:]
    assert "[FAIL]" in run.output and "Traceback" not in run.output


def test_a_corrupted_ltx_object_is_unrestorable_in_one_line(pod: Pod) -> None:
    make_db(pod.db(), 200)
    sup = pod.start_replicate("--verify-interval", "0")
    sup.wait_ready()
    replica_catches_up(pod, list(range(1, 201)))
    assert sup.terminate() == 0
    s3 = role_s3(pod)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=pod.bed.role.bucket, Prefix=f"{pod.prefix}/app.db/")
            ["Contents"] if o["Key"].split("/")[-1].startswith("0000000000000001-")]
    for key in keys:  # every file a restore can start from (a snapshot, its compactions)
        body = bytearray(s3.get_object(Bucket=pod.bed.role.bucket, Key=key)["Body"].read())
        body[120:180] = os.urandom(60)  # inside the page data: the file checksum no longer holds
        s3.put_object(Bucket=pod.bed.role.bucket, Key=key, Body=bytes(body))
    run = pod.run("verify", "--timeout", "60")
    assert run.returncode in (ExitCode.VERIFY_UNRESTORABLE, ExitCode.VERIFY_INTEGRITY), run.output[-2000:]
    fails = [x for x in run.output.splitlines() if x.startswith("[FAIL]")]
    assert len(fails) == 1 and "Traceback" not in run.output


def test_a_healthy_replica_verifies_and_drills_raise_no_false_alarm(pod: Pod) -> None:
    """Drills every 2 s under a steady writer: every one succeeds; verify --compare on the quiet
    database passes. Then the metrics and the names they carry."""
    sup = pod.start_replicate("--verify-interval", "2")
    sup.wait_ready()
    writer = Writer(pod.db(), 0.05).start()
    label = f'{{db="{pod.db()}"}}'
    sup.wait_for(lambda: sum(1 for e in sup.events() if e.get("event") in ("drill_verified", "drill_failed")) >= 10,
                 120, "ten drills under a steady writer")
    drills = [e for e in sup.events() if e.get("event") in ("drill_verified", "drill_failed")]
    assert all(e["event"] == "drill_verified" for e in drills), drills
    assert any(e.get("compared") for e in drills), drills  # the socket's sync made still moments
    assert sup.metric("litestream_supervisor_verify_last_success_timestamp_seconds", label) > time.time() - 60
    assert sum(sup.metric("litestream_supervisor_verify_failures_total", f'{{db="{pod.db()}",reason="{r}"}}')
               for r in ("unrestorable", "integrity_failed", "differs")) == 0
    committed = writer.stop()
    time.sleep(2)
    run = pod.run("verify", "--compare", "--timeout", "60")
    assert run.returncode == 0, run.output[-2000:]
    assert "[ok]" in run.output and "identical" in run.output
    assert sup.terminate() == 0, sup.output()[-3000:]
    assert sup.count("final_content_verified") == 1
    replica_catches_up(pod, committed)


def test_the_drill_reports_a_lossy_replica_within_one_interval(pod: Pod) -> None:
    """The sidecar adopts the lossy replica's database: its drill finds the difference and says so in
    metrics within one interval (the alert's expression: failures rising)."""
    app = lossy_replica(pod)
    try:
        sup = pod.start_replicate("--verify-interval", "3", "--if-local-behind", "keep")
        sup.wait_ready()
        label = f'{{db="{pod.db()}",reason="differs"}}'
        sup.wait_for(lambda: sup.metric("litestream_supervisor_verify_failures_total", label) >= 1, 60,
                     "the drill's difference in metrics")
    finally:
        app.close()
    assert sup.count("drill_failed") >= 1
    sup.proc.kill()


def lose_rows_under_the_sidecar(pod: Pod) -> tuple[Supervisor, int, list[int]]:
    """With the supervisor's WAL protection switched off (a test hook), the hazard happens under the
    sidecar itself: Litestream fenced (S3 cut past the lease's fence time) while the app commits and
    checkpoints, back once S3 is; then SIGTERM. (exit code, every row committed)"""
    app = connect(pod.db())  # before Litestream: its first file is a snapshot, the next ones are not
    with pod.through_forwarder() as fwd:
        sup = pod.start_replicate("--verify-interval", "0", "--lease-ttl", "8", env=pod.env(
            AWS_ENDPOINT_URL_STS=pod.bed.endpoint, _LITESTREAM_SUPERVISOR_TEST_NO_WAL_GUARD="1"))
        sup.wait_ready()
        try:
            def fenced() -> None:
                fwd.cut()
                sup.wait_for(lambda: sup.count("lease_fenced") >= 1, 30, "fenced")

            committed, completed = rows_checkpointed_while_litestream_is_away(pod, app, fenced)
            assert completed  # nothing held the WAL this time
            fwd.restore()
            sup.wait_for(lambda: sup.count("litestream_started") == 2, 60, "Litestream back")
            time.sleep(3)
            return sup, sup.terminate(), committed
        finally:
            app.close()


def snapshotted_after_restart(sup: Supervisor) -> bool:
    events = sup.events()
    starts = [i for i, e in enumerate(events) if e.get("event") == "litestream_started"]
    return any(e.get("msg") == "snapshot complete" for e in events[starts[1]:])


def test_the_final_content_check_catches_a_replica_that_lost_rows(pod: Pod, tmp_path: Path) -> None:
    """Positions agree at SIGTERM, content does not: exit 10, named. Litestream 0.5.17 itself notices
    the restarted WAL now and then (seen once in five runs under two test workers) and snapshots:
    then nothing is lost and exit 0 must say so; the scenario is tried again, up to three times."""
    for attempt in range(3):
        here = pod if attempt == 0 else Pod.create(pod.bed, tmp_path / f"again{attempt}",
                                                   prefix=f"t/{uuid.uuid4().hex[:12]}")
        try:
            sup, rc, committed = lose_rows_under_the_sidecar(here)
            assert len(committed) == 405
            if snapshotted_after_restart(sup):
                # no hazard this time: the invariant still holds (exit 0 implies every row is there)
                assert rc == 0 and sup.count("final_content_verified") == 1, sup.output()[-3000:]
                replica_catches_up(here, committed, timeout=5)
                continue
            assert rc == ExitCode.FINAL_SYNC_UNCONFIRMED, sup.output()[-3000:]
            assert sup.count("final_content_differs") == 1
            unconfirmed = [e for e in sup.events() if e.get("event") == "final_position_unconfirmed"]
            assert unconfirmed and "content" in str(unconfirmed[0]["detail"])
            assert "rows: " in str(unconfirmed[0]["detail"])
            return
        finally:
            if here is not pod:
                here.close()
    pytest.fail("Litestream snapshotted after each of 3 restarts: the lossy case never came up")


def test_verify_refuses_a_scratch_dir_too_small_in_one_line(pod: Pod, tmp_path: Path) -> None:
    make_db(pod.db(), 3000, payload_bytes=1024)  # ~6 MB
    sup = pod.start_replicate("--verify-interval", "0")
    sup.wait_ready()
    replica_catches_up(pod, list(range(1, 11)))
    assert sup.terminate() == 0
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], check=True)
    try:
        run = pod.run("verify", "--scratch-dir", str(small), "--timeout", "60")
    finally:
        subprocess.run(["umount", str(small)], check=False)
    assert run.returncode == ExitCode.VERIFY_NO_SPACE, run.output[-2000:]
    errors = [x for x in run.output.splitlines() if "--scratch-dir" in x]
    assert errors and "MB free" in errors[-1]
