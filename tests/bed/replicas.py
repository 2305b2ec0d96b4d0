"""Put data in a replica the way users do: bare Litestream (0.5 with its own web identity, or
0.3 with static admin keys), and damage or litter a prefix for the fail-closed tests."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tests.bed.ceph import ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY
from tests.bed.pod import Pod, connect, row_ids
from tests.bed.testbed import litestream_binary

LITESTREAM_03 = (Path(__file__).resolve().parents[2]
                 / ".work/litestream-0.3/node_modules/@flydotio/litestream-linux-x64/litestream")


def make_db(db: Path, rows: int, payload_bytes: int = 64) -> None:
    con = connect(db)
    con.executemany("INSERT INTO rows(id, payload) VALUES (?, ?)",
                    ((i, os.urandom(payload_bytes).hex()) for i in range(1, rows + 1)))
    con.commit()
    con.close()


def bare_env(pod: Pod) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}  # 0.5.17 refuses to start with it
    env.update(pod.bed.pod_env(pod.projector.path))
    return env


def push_with_litestream(pod: Pod, db: Path) -> None:
    """One `litestream replicate -once` with Litestream's own web-identity support."""
    subprocess.run([litestream_binary(), "replicate", "-config", str(pod.config), "-once"],
                   env=bare_env(pod), check=True, capture_output=True, timeout=120)
    forget_local(db)


def forget_local(db: Path) -> None:
    """The pod is gone: its emptyDir (db, WAL, Litestream's meta dir) with it."""
    for p in db.parent.glob(db.name + "*"):
        p.unlink()
    shutil.rmtree(db.parent / f".{db.name}-litestream", ignore_errors=True)


def push_with_litestream_03(pod: Pod, db: Path, seconds: float = 4) -> None:
    """Litestream 0.3.13 writes a generations/ replica (static admin keys: 0.3 has no web identity)."""
    if not LITESTREAM_03.exists():
        raise AssertionError(f"{LITESTREAM_03} missing: run `make deps`")
    cfg = pod.root / "ls03.yml"
    cfg.write_text(f"dbs:\n  - path: {db}\n    replicas:\n      - type: s3\n        bucket: {pod.bed.role.bucket}\n"
                   f"        path: {pod.prefix}/{db.name}\n        endpoint: {pod.endpoint}\n"
                   "        region: us-east-1\n        force-path-style: true\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID=ADMIN_ACCESS_KEY, AWS_SECRET_ACCESS_KEY=ADMIN_SECRET_KEY)
    proc = subprocess.Popen([str(LITESTREAM_03), "replicate", "-config", str(cfg)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.terminate()
        proc.wait(timeout=30)
    forget_local(db)


def row_count(db: Path) -> int:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(con.execute("SELECT count(*) FROM rows").fetchone()[0])
    finally:
        con.close()


def role_s3(pod: Pod):
    """S3 as the pod's role (objects Litestream wrote belong to it, not to the admin)."""
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    sts = boto3.client("sts", endpoint_url=pod.bed.endpoint, region_name=pod.bed.region,
                       config=Config(signature_version=UNSIGNED))
    c = sts.assume_role_with_web_identity(RoleArn=pod.bed.role.arn, RoleSessionName="test-helper",
                                          WebIdentityToken=pod.bed.issuer.mint())["Credentials"]
    return boto3.client("s3", endpoint_url=pod.bed.endpoint, region_name=pod.bed.region,
                        aws_access_key_id=c["AccessKeyId"], aws_secret_access_key=c["SecretAccessKey"],
                        aws_session_token=c["SessionToken"], config=Config(s3={"addressing_style": "path"}))


def restore_and_compare(pod: Pod, committed: list[int]) -> None:
    """A new pod (empty data dir) restores; every committed row must be there."""
    forget_local(pod.db())
    run = pod.run("restore")
    assert run.returncode == 0, run.output
    missing = sorted(set(committed) - set(row_ids(pod.db())))
    assert not missing, f"{len(missing)} committed rows lost, first {missing[:5]}"


def restoring(pod: Pod) -> bool:
    """A restore is under way: its temp file sits beside the target."""
    return any("restoring" in p.name for p in pod.data.iterdir())


def replica_row_ids(pod: Pod, db: Path) -> set[int]:
    """What the replica holds right now, read by bare Litestream into a scratch file: the pod's own
    files (and a supervisor running on them) are left alone."""
    out = pod.root / "replica-view.db"
    for p in out.parent.glob(out.name + "*"):
        p.unlink()
    run = subprocess.run([litestream_binary(), "restore", "-config", str(pod.config), "-o", str(out), str(db)],
                         env=bare_env(pod), capture_output=True, text=True, timeout=120)
    if run.returncode != 0:
        return set()
    return set(row_ids(out))


def commit_rows(db: Path | sqlite3.Connection, start: int, rows: int) -> list[int]:
    """One commit per row: on the app's open connection when given one (left open), else on a
    connection of its own."""
    con = connect(db) if isinstance(db, Path) else db
    ids = list(range(start, start + rows))
    for i in ids:
        con.execute("INSERT INTO rows(id, payload) VALUES (?, ?)", (i, os.urandom(64).hex()))
        con.commit()
    if con is not db:
        con.close()
    return ids


def rows_checkpointed_while_litestream_is_away(pod: Pod, app: sqlite3.Connection,
                                               send_away: Callable[[], None]) -> tuple[list[int], bool]:
    """100 rows that reach the replica; then Litestream is sent away (killed, fenced, stopped) and
    the app does alone what SQLite's automatic checkpoint does: 300 commits, a PASSIVE checkpoint
    that copies what it may into the db file, and 5 more commits that restart the WAL from its first
    frame with new salts when that checkpoint was complete (the file keeps its length). The app's
    connection stays open, as an app's does: the last connection's close would delete the WAL.
    Returns every row committed, and whether the checkpoint completed (it cannot while the
    supervisor holds its read lock for the absent Litestream)."""
    committed = commit_rows(app, 1, 100)
    replica_catches_up(pod, committed)
    send_away()
    committed += commit_rows(app, 1000, 300)
    busy, frames, backfilled = app.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    assert busy == 0 and frames > 0
    return committed + commit_rows(app, 1300, 5), frames == backfilled


def replica_catches_up(pod: Pod, committed: list[int], timeout: float = 45) -> None:
    """While the supervisor runs: the replica comes to hold every committed row (not only after the
    final upload: a pod that dies later must not lose them)."""
    deadline = time.monotonic() + timeout
    missing = sorted(committed)
    while time.monotonic() < deadline:
        missing = sorted(set(committed) - replica_row_ids(pod, pod.db()))
        if not missing:
            return
        time.sleep(1)
    raise AssertionError(f"{len(missing)} committed rows never reached the replica while it ran, first {missing[:5]}")
