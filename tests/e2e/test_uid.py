"""Same user as the app (issue 13): SQLite and Litestream share the db, its WAL and Litestream's
meta dir, so the injected containers run with the uid the app writes with. On the bed: an app as
uid 1000 writes; restore and replicate run as uid 1000; Litestream checkpoints and uploads; a
process with another uid is told by `check` which file, which owner."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bed.net import free_port
from tests.bed.pod import CAPTURED, Pod, Supervisor, row_ids, supervisor_cmd
from tests.bed.testbed import Bed

pytestmark = pytest.mark.bed
APP_UID = 1000


def as_user(uid: int) -> list[str]:
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]


@pytest.fixture
def shared_pod(bed: Bed) -> Iterator[Pod]:
    """A pod whose files other uids can reach (pytest's own tmp dirs are 0700 root)."""
    root = Path(tempfile.mkdtemp(prefix="ls-uid-", dir="/tmp"))
    root.chmod(0o755)
    pod = Pod.create(bed, root, prefix=f"t/{uuid.uuid4().hex[:12]}")
    for d in (pod.data, root / "home"):
        d.mkdir(exist_ok=True)
        os.chown(d, APP_UID, APP_UID)
    pod.projector.owner = (APP_UID, APP_UID)  # as the kubelet does for a pod running as one uid
    pod.projector.rotate()
    try:
        yield pod
    finally:
        pod.close()
        shutil.rmtree(root, ignore_errors=True)


def env_for(pod: Pod) -> dict[str, str]:
    return pod.env(HOME=str(pod.root / "home"), TMPDIR=str(pod.root / "home"))


APP = """
import sqlite3, sys
con = sqlite3.connect(sys.argv[1])
con.execute("PRAGMA journal_mode=WAL")
con.execute("CREATE TABLE IF NOT EXISTS rows(id INTEGER PRIMARY KEY, payload TEXT)")
for i in range(1, 301):
    con.execute("INSERT INTO rows VALUES (?, 'x')", (i,))
    con.commit()
con.close()
"""


def test_sidecars_as_the_apps_uid_replicate_and_a_mismatch_is_explained(shared_pod: Pod) -> None:
    pod = shared_pod
    env = env_for(pod)
    run = subprocess.run(as_user(APP_UID) + supervisor_cmd("restore"), env=env, capture_output=True, text=True,
                         timeout=120, check=False)
    CAPTURED.append(run.stderr)
    assert run.returncode == 0, run.stderr[-2000:]
    port = free_port()
    log = pod.root / "replicate.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(as_user(APP_UID) + supervisor_cmd("replicate", "--health-addr", f"127.0.0.1:{port}",
                                                                  "--lag-interval", "0.5"),
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    sup = Supervisor(proc, log, pod, port)
    pod.procs.append(proc)
    sup.wait_ready()
    app = subprocess.run([*as_user(APP_UID), sys.executable, "-c", APP, str(pod.db())], capture_output=True,
                         text=True, timeout=60, check=False)
    assert app.returncode == 0, app.stderr
    assert pod.db().stat().st_uid == APP_UID
    sup.wait_for(lambda: sup.metric("litestream_supervisor_replica_txid", f'{{db="{pod.db()}"}}') > 0
                 and sup.metric("litestream_supervisor_replication_lag_seconds", f'{{db="{pod.db()}"}}') == 0,
                 60, "uploaded as uid 1000")
    meta = pod.data / ".app.db-litestream"
    assert meta.stat().st_uid == APP_UID  # Litestream's own state belongs to the app's user too
    assert "readonly database" not in sup.output()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, sup.output()[-3000:]
    # another uid: check names the file and its owner
    pod.projector.owner = (2000, 2000)
    pod.projector.rotate()
    check = subprocess.run(as_user(2000) + supervisor_cmd("check"), env=env, capture_output=True, text=True,
                           timeout=120, check=False)
    CAPTURED.append(check.stdout + check.stderr)
    assert check.returncode != 0
    line = next(line for line in check.stdout.splitlines() if line.startswith("[FAIL] files"))
    assert f"uid {APP_UID}" in line and "uid 2000" in line and "readonly database" in line
    # and every row is in the replica
    for p in pod.data.iterdir():
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()
    run = subprocess.run(supervisor_cmd("restore"), env=env, capture_output=True, text=True, timeout=120,
                         check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    assert row_ids(pod.db()) == list(range(1, 301))

