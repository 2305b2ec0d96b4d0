"""Whose replica is this, and what is on disk (issue 25), on the real bed.

The two promises, checked as invariants: an app never starts on wrong or empty data while a good
replica exists, and exit 0 means every committed row is in the replica.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest

from supervisor.core import workload as workloads
from supervisor.core.errors import ExitCode
from supervisor.replica.tenure import fence_after
from tests.bed.pod import Pod, Writer, connect, row_ids
from tests.bed.replicas import commit_rows, forget_local, replica_row_ids, role_s3

pytestmark = pytest.mark.bed
TTL = 8.0


def exit_zero_means_every_row_is_in_the_replica(rc: int, pod: Pod, committed: list[int]) -> None:
    """The promise: whatever the scenario, exit 0 implies a restore holds every committed row."""
    if rc != 0:
        return
    missing = sorted(set(committed) - replica_row_ids(pod, pod.db()))
    assert not missing, f"exit 0 but {len(missing)} committed rows are not in the replica, first {missing[:5]}"


# -- 1. the workload never comes from a random pod name ---------------------------------------------

def one_db_env(pod: Pod, pod_name: str, **extra: str | None) -> dict[str, str]:
    values: dict[str, str | None] = {"LITESTREAM_CONFIG": None, "LITESTREAM_SUPERVISOR_WORKLOAD": None,
                                     "POD_NAME": pod_name, "POD_SERVICE_ACCOUNT": "orders",
                                     "AWS_ENDPOINT_URL_S3": pod.endpoint, **extra}
    return pod.env(**values)


def test_a_replacement_pod_with_another_random_suffix_restores_its_predecessors_rows(pod: Pod) -> None:
    """A Deployment named 50 characters: its pods' names lose part of the pod-template-hash. On the
    code before, each pod derived its own replica path from its own name: the replacement logged
    fresh_start and exited 0 on an empty database while its predecessor's replica held every row."""
    deployment = "orders-api-" + "x" * 39  # 50 characters (Helm full names often are)
    template_hash = "5f6c7d8b9c"
    flags = ("--db", str(pod.db()), "--bucket", pod.bed.role.bucket, "--lease-ttl", str(TTL))
    first_name = workloads.generated_name(f"{deployment}-{template_hash}-", "b2n4z")
    second_name = workloads.generated_name(f"{deployment}-{template_hash}-", "x7k9q")
    assert template_hash not in first_name  # the cut took the hash
    # unset, the workload cannot be known exactly: exit 2 naming what to set, nothing written
    run = pod.run("restore", *flags, env=one_db_env(pod, first_name, POD_TEMPLATE_HASH=template_hash))
    assert run.returncode == ExitCode.USAGE and "LITESTREAM_SUPERVISOR_WORKLOAD" in run.output, run.output
    assert not pod.db().exists()
    env = one_db_env(pod, first_name, POD_TEMPLATE_HASH=template_hash, LITESTREAM_SUPERVISOR_WORKLOAD=deployment)
    assert pod.run("restore", *flags, env=env).returncode == 0
    sup = pod.start_replicate(*flags, env=env)
    sup.wait_ready()
    committed = commit_rows(pod.db(), 1, 50)
    assert sup.terminate() == 0, sup.output()[-3000:]
    forget_local(pod.db())
    pod.uid = "replacement-" + pod.uid
    env = one_db_env(pod, second_name, POD_TEMPLATE_HASH=template_hash, LITESTREAM_SUPERVISOR_WORKLOAD=deployment)
    run = pod.run("restore", *flags, env=env)
    assert run.returncode == 0, run.output[-2000:]
    assert row_ids(pod.db()) == committed
    keys = [o["Key"] for o in role_s3(pod).list_objects_v2(Bucket=pod.bed.role.bucket,
                                                            Prefix="system:serviceaccount:tests:orders/")["Contents"]]
    assert keys and all(k.startswith(f"system:serviceaccount:tests:orders/{deployment}/app.db") for k in keys)


# -- 2. data already on disk is checked, not trusted ------------------------------------------------

def stale_volume(pod: Pod) -> tuple[Path, list[int]]:
    """Rows 1-100 replicated; the db and Litestream's state copied aside (a volume snapshot); rows
    101-200 replicated and the sidecar stopped with exit 0; the copy put back. Returns the copy."""
    sup = pod.start_replicate("--lease-ttl", str(TTL))
    sup.wait_ready()
    app = connect(pod.db())
    committed = commit_rows(app, 1, 100)
    sup.wait_for(lambda: replica_row_ids(pod, pod.db()) >= set(committed), 30, "rows 1-100 in the replica")
    snapshot = pod.root / "snapshot"
    snapshot.mkdir()
    for p in pod.data.iterdir():
        (shutil.copytree if p.is_dir() else shutil.copy2)(p, snapshot / p.name)
    committed += commit_rows(app, 101, 100)
    app.close()
    assert sup.terminate() == 0, sup.output()[-3000:]
    assert replica_row_ids(pod, pod.db()) == set(committed)
    for p in list(pod.data.iterdir()):
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    for p in snapshot.iterdir():
        (shutil.copytree if p.is_dir() else shutil.copy2)(p, pod.data / p.name)
    assert len(row_ids(pod.db())) == 100
    return snapshot, committed


def test_a_volume_put_back_behind_the_replica_never_becomes_its_head(pod: Pod) -> None:
    """On the code before: restore said db_present and exited 0, replicate exited 0, and the replica
    ended with the stale file's 100 rows instead of 200."""
    _, committed = stale_volume(pod)
    run = pod.run("restore", "--lease-ttl", str(TTL))
    assert run.returncode == ExitCode.LOCAL_BEHIND, run.output[-2000:]
    line = next(json.loads(x) for x in run.output.splitlines() if '"exit_code"' in x)
    assert "--if-local-behind restore" in line["error"] and "--if-local-behind keep" in line["error"]
    assert "behind the replica's txid" in line["error"]  # both positions named
    # the sidecar too (it may run without restore): it refuses before Litestream starts
    sup = pod.start_replicate("--lease-ttl", str(TTL))
    assert sup.proc.wait(timeout=60) == ExitCode.LOCAL_BEHIND, sup.output()[-3000:]
    assert sup.count("litestream_started") == 0
    assert replica_row_ids(pod, pod.db()) == set(committed)  # the replica kept all 200
    # the way out: the stale file moved aside (never deleted), the replica restored
    run = pod.run("restore", "--lease-ttl", str(TTL), "--if-local-behind", "restore")
    assert run.returncode == 0, run.output[-2000:]
    assert row_ids(pod.db()) == committed
    aside = [p for p in pod.data.iterdir() if ".stale-" in p.name]
    assert any(p.name.startswith("app.db.stale-") for p in aside)
    sup = pod.start_replicate("--lease-ttl", str(TTL))
    sup.wait_ready()
    committed += commit_rows(pod.db(), 201, 10)
    rc = sup.terminate()
    assert rc == 0, sup.output()[-3000:]
    exit_zero_means_every_row_is_in_the_replica(rc, pod, committed)


def test_a_present_database_is_quick_checked(pod: Pod) -> None:
    sup = pod.start_replicate("--lease-ttl", str(TTL))
    sup.wait_ready()
    commit_rows(pod.db(), 1, 20)
    assert sup.terminate() == 0
    run = pod.run("restore", "--lease-ttl", str(TTL))
    assert run.returncode == 0 and "db_present" in run.output, run.output[-2000:]
    con = connect(pod.db())
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # every row in the file itself
    con.close()
    with open(pod.db(), "r+b") as f:  # a torn page in the middle of the file
        f.seek(4096 + 100)
        f.write(b"\xff" * 2000)
    run = pod.run("restore", "--lease-ttl", str(TTL))
    assert run.returncode == ExitCode.RESTORE_FAILED and "quick check failed" in run.output, run.output[-2000:]


# -- 3. a fence is a deadline ------------------------------------------------------------------------

def test_a_path_that_hangs_fences_litestream_before_the_lease_can_expire(pod: Pod) -> None:
    """S3 stops answering without closing connections. On the code before, the fence waited for the
    hung renewal to return: it landed 30.5-32.9 s after the last confirmed renewal with a 30 s TTL,
    after another pod may have taken the lease."""
    with pod.through_forwarder() as fwd:
        sup = pod.start_replicate("--lease-ttl", str(TTL), env=pod.env(AWS_ENDPOINT_URL_STS=pod.bed.endpoint))
        sup.wait_ready()
        litestream = sup.litestream_pid()
        fwd.swallow()
        sup.wait_for(lambda: sup.count("lease_fenced") >= 1, 30, "fenced")
        fenced = next(e for e in sup.events() if e.get("event") == "lease_fenced")
        unconfirmed = float(fenced["unconfirmed_seconds"])  # type: ignore[arg-type]
        margin = TTL - fence_after(TTL)
        assert unconfirmed <= fence_after(TTL) + 0.5 < TTL - margin / 2, fenced
        assert not Path(f"/proc/{litestream}").exists() or "Z" in Path(f"/proc/{litestream}/stat").read_text()
        assert sup.get("/readyz")[0] == 503
        fwd.unswallow()
        sup.wait_for(lambda: sup.count("lease_confirmed") >= 1, 30, "confirmed again")
        sup.wait_ready()
        assert sup.terminate() == 0, sup.output()[-3000:]


def test_a_renewal_applied_after_its_client_gave_up_is_not_a_lost_lease(pod: Pod) -> None:
    """The server applies a renewal whose answer arrives too late: the next renewal gets 412. On the
    code before, that was "lease lost" (exit 15, no final upload)."""
    with pod.through_forwarder() as fwd:
        sup = pod.start_replicate("--lease-ttl", str(TTL), env=pod.env(AWS_ENDPOINT_URL_STS=pod.bed.endpoint))
        sup.wait_ready()
        writer = Writer(pod.db(), 0.05).start()
        fwd.hold_responses(TTL / 3 + 1)  # longer than a renewal may take
        sup.wait_for(lambda: sup.count("lease_renewal_failed") >= 1, 30, "a renewal given up on")
        fwd.hold_responses(0)
        sup.wait_for(lambda: sup.count("lease_etag_adopted") >= 1, 30, "its ETag adopted")
        time.sleep(TTL / 3 + 1)
        committed = writer.stop()
        rc = sup.terminate()
    assert sup.count("lease_lost") == 0 and rc == 0, sup.output()[-3000:]
    exit_zero_means_every_row_is_in_the_replica(rc, pod, committed)


# -- 4. exit codes say what happened -------------------------------------------------------------------

def test_a_sidecar_restarted_after_an_oom_kill_and_stopped_before_litestream_ran_is_not_exit_0(pod: Pod) -> None:
    """The sidecar is SIGKILLed (OOM) beside a running app; it restarts, STS is down, the app writes on,
    SIGTERM. On the code before: exit 0 ("nothing was replicated, so nothing can be missing")."""
    sup = pod.start_replicate("--lease-ttl", str(TTL))
    sup.wait_ready()
    app = connect(pod.db())
    committed = commit_rows(app, 1, 20)
    litestream = sup.litestream_pid()
    sup.proc.kill()
    os.kill(litestream, signal.SIGKILL)
    sup.proc.wait()
    again = pod.start_replicate("--lease-ttl", str(TTL), env=pod.env(AWS_ENDPOINT_URL_STS="http://127.0.0.1:9"))
    again.wait_for(lambda: again.metric("litestream_supervisor_sts_requests_total", '{result="unavailable"}') >= 1,
                   30, "STS down")
    committed += commit_rows(app, 21, 20)
    app.close()
    rc = again.terminate()
    assert rc == ExitCode.FINAL_SYNC_UNCONFIRMED, again.output()[-3000:]
    assert again.count("stopped_before_start") == 1
    exit_zero_means_every_row_is_in_the_replica(rc, pod, committed)


def test_a_sidecar_stopped_before_start_on_a_just_restored_database_exits_0(pod: Pod) -> None:
    """The other side of the rule: nothing on disk but what restore put there: nothing is missing."""
    sup = pod.start_replicate("--lease-ttl", str(TTL))
    sup.wait_ready()
    commit_rows(pod.db(), 1, 20)
    assert sup.terminate() == 0
    forget_local(pod.db())
    assert pod.run("restore", "--lease-ttl", str(TTL)).returncode == 0
    again = pod.start_replicate("--lease-ttl", str(TTL), env=pod.env(AWS_ENDPOINT_URL_STS="http://127.0.0.1:9"))
    again.wait_for(lambda: again.metric("litestream_supervisor_sts_requests_total", '{result="unavailable"}') >= 1,
                   30, "STS down")
    assert again.terminate() == 0, again.output()[-3000:]


APP = """
import os, sqlite3, sys, time
db = sys.argv[1]
if os.fork() == 0:  # a descendant the app does not wait for: it commits on after its parent exits
    con = sqlite3.connect(db, timeout=10)
    i = 100000
    while True:
        i += 1
        con.execute("INSERT INTO rows(id, payload) VALUES (?, 'child')", (i,))
        con.commit()
        with open(db + ".child-committed", "a") as f:
            f.write(f"{i}\\n")
        time.sleep(0.02)
con = sqlite3.connect(db, timeout=10)
con.execute("PRAGMA journal_mode=WAL")
con.execute("CREATE TABLE IF NOT EXISTS rows(id INTEGER PRIMARY KEY, payload TEXT)")
con.commit()
import signal
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # the parent exits at once, the child does not
while True:
    time.sleep(0.1)
"""


def cmdline_has(proc: Path, text: str) -> bool:
    try:
        return text.encode() in (proc / "cmdline").read_bytes()
    except OSError:
        return False


def test_exec_stops_the_apps_whole_process_group_before_the_final_upload(pod: Pod) -> None:
    """On the code before, only the app's own pid was signalled: its child committed after the final
    upload (rows in the database, not in the replica, and exit 0)."""
    connect(pod.db()).close()
    script = pod.root / "app.py"
    script.write_text(APP)
    sup = pod.start_replicate("--lease-ttl", str(TTL), "--exec", f"{sys.executable} {script} {pod.db()}")
    sup.wait_ready()
    marker = Path(str(pod.db()) + ".child-committed")
    sup.wait_for(lambda: marker.exists() and len(marker.read_text().split()) > 20, 30, "the app's child commits")
    rc = sup.terminate()
    committed = [int(x) for x in marker.read_text().split()]
    time.sleep(0.5)
    assert [int(x) for x in marker.read_text().split()] == committed  # nothing after the stop
    assert rc == 0, sup.output()[-3000:]
    exit_zero_means_every_row_is_in_the_replica(rc, pod, committed)
    assert not [p for p in Path("/proc").iterdir() if p.name.isdigit() and cmdline_has(p, str(script))]


# -- 5. one replica, one workload ---------------------------------------------------------------------

def test_a_replica_owned_by_another_workload_is_refused_unless_taken_over_on_purpose(pod: Pod) -> None:
    sup = pod.start_replicate("--lease-ttl", str(TTL))
    sup.wait_ready()
    committed = commit_rows(pod.db(), 1, 10)
    assert sup.terminate() == 0
    forget_local(pod.db())
    pod.workload = "billing"  # another workload, the same explicit path in its litestream.yml
    run = pod.run("restore", "--lease-ttl", str(TTL))
    assert run.returncode == ExitCode.OTHER_WORKLOAD, run.output[-2000:]
    assert "tests/app" in run.output and "--adopt-replica-from tests/app" in run.output
    assert not pod.db().exists()
    run = pod.run("restore", "--lease-ttl", str(TTL), "--adopt-replica-from", "tests/app")
    assert run.returncode == 0, run.output[-2000:]
    assert row_ids(pod.db()) == committed


def test_an_empty_prefix_beside_a_used_lease_is_not_a_fresh_start(pod: Pod) -> None:
    sup = pod.start_replicate("--lease-ttl", str(TTL))
    sup.wait_ready()
    commit_rows(pod.db(), 1, 10)
    sup.wait_for(lambda: sup.metric("litestream_supervisor_replica_txid", f'{{db="{pod.db()}"}}') > 0, 30, "upload")
    time.sleep(TTL / 3 + 1)  # a renewal records the replica's position in the lease
    assert sup.terminate() == 0
    forget_local(pod.db())
    s3 = role_s3(pod)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=pod.bed.role.bucket, Prefix=f"{pod.prefix}/app.db/")
    for page in pages:
        for o in page.get("Contents", []):
            s3.delete_object(Bucket=pod.bed.role.bucket, Key=o["Key"])  # a lifecycle rule gone wrong
    run = pod.run("restore", "--lease-ttl", str(TTL))
    assert run.returncode == ExitCode.REPLICA_VANISHED, run.output[-2000:]
    assert not pod.db().exists() and "fresh_start" not in run.output
