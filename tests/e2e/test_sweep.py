"""Issue 11 on the real bed: the failures a careful operator hits. Each test failed on the
code before the sweep (see the issue note) and states the promise it protects."""

from __future__ import annotations

import contextlib
import signal
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from supervisor.core.errors import ExitCode
from tests.bed.net import free_port
from tests.bed.pod import Pod, Writer, connect, row_ids
from tests.bed.replicas import bare_env, forget_local, make_db, push_with_litestream
from tests.bed.testbed import litestream_binary

pytestmark = pytest.mark.bed


def write_config(pod: Pod, path_line: str, db: Path | None = None) -> None:
    pod.config.write_text(f"dbs:\n  - path: {db or pod.db()}\n    replica:\n      type: s3\n"
                          f"      bucket: {pod.bed.role.bucket}\n      {path_line}\n      endpoint: {pod.endpoint}\n")


def push_plain(pod: Pod, db: Path, env: dict[str, str] | None = None) -> None:
    """Plain Litestream 0.5.17 (its own web identity, its own expansion) writes the replica."""
    subprocess.run([litestream_binary(), "replicate", "-config", str(pod.config), "-once"],
                   env={**bare_env(pod), **(env or {})}, check=True, capture_output=True, timeout=120)
    forget_local(db)


def test_stale_wal_and_meta_dir_beside_a_missing_db_never_replace_the_restored_rows(pod: Pod) -> None:
    """Item 1 (and 19): exit 0 means the app opens exactly the replica's rows."""
    make_db(pod.db(), 300)
    push_with_litestream(pod, pod.db())
    # An older life of the same database, its WAL holding other rows, left on the volume.
    old = pod.root / "old" / "app.db"
    old.parent.mkdir()
    make_db(old, 300)
    con = connect(old)
    con.execute("PRAGMA wal_autocheckpoint=0")
    con.execute("DELETE FROM rows")
    con.executemany("INSERT INTO rows(id, payload) VALUES (?, 'stale')", ((i,) for i in range(9001, 9006)))
    con.commit()
    for suffix in ("-wal", "-shm"):
        (pod.data / f"app.db{suffix}").write_bytes((old.parent / f"app.db{suffix}").read_bytes())
    con.close()
    (pod.data / ".app.db-litestream").mkdir()
    (pod.data / ".app.db-litestream" / "old-state").write_text("x")
    (pod.data / ".app.db.restoring-deadbeef").write_bytes(b"half a restore")  # a SIGKILLed restore's temp
    run = pod.run("restore")
    assert run.returncode == 0, run.output
    assert row_ids(pod.db()) == list(range(1, 301))  # what SQLite shows on first open
    moved = sorted(p.name.split(".stale-")[0] for p in pod.data.iterdir() if ".stale-" in p.name)
    assert moved == [".app.db-litestream", "app.db-shm", "app.db-wal"]  # kept, never deleted
    assert not (pod.data / ".app.db.restoring-deadbeef").exists() and '"stale_files_moved"' in run.output


def test_replica_path_with_a_dollar_in_the_environment_is_the_one_plain_litestream_wrote(pod: Pod) -> None:
    """Item 2: the child expanded our already expanded path again, restoring from another prefix."""
    write_config(pod, f"path: {pod.prefix}/${{TENANT}}/app.db")
    tenant = {"TENANT": "t$HOME"}
    make_db(pod.db(), 120)
    push_plain(pod, pod.db(), tenant)
    run = pod.run("restore", env=pod.env(**tenant))
    assert run.returncode == 0, run.output
    assert row_ids(pod.db()) == list(range(1, 121))


def test_leading_slash_path_finds_the_replica_plain_litestream_wrote(pod: Pod) -> None:
    """Item 3: `path: /x` is used verbatim by Litestream (`/x/0000/...`); we saw an empty replica."""
    write_config(pod, f"path: /{pod.prefix}/app.db")
    make_db(pod.db(), 80)
    push_plain(pod, pod.db())
    keys = [o["Key"] for o in pod.bed.admin_s3().list_objects_v2(Bucket=pod.bed.role.bucket,
                                                                  Prefix=f"/{pod.prefix}/").get("Contents", [])]
    assert keys and all(k.startswith(f"/{pod.prefix}/app.db/") for k in keys)
    run = pod.run("restore", "--require-replica")
    assert run.returncode == 0, run.output
    assert row_ids(pod.db()) == list(range(1, 81))


def test_a_file_without_a_sqlite_header_is_never_present_while_the_replica_has_data(pod: Pod) -> None:
    """Item 4: a 0-byte app.db was left "untouched" and Litestream then made it the replica's head."""
    make_db(pod.db(), 50)
    push_with_litestream(pod, pod.db())
    pod.db().touch()  # a bare sqlite3.connect() makes this
    run = pod.run("restore")
    assert run.returncode == ExitCode.NOT_SQLITE, run.output
    assert str(pod.db()) in run.output and "0 bytes" in run.output
    assert pod.db().exists() and pod.db().stat().st_size == 0  # the user's file is never deleted
    pod.db().unlink()
    run = pod.run("restore")
    assert run.returncode == 0 and row_ids(pod.db()) == list(range(1, 51)), run.output


def _trial(pod: Pod, cut_at: float, kill_litestream: bool) -> tuple[int, list[int], str]:
    """Replicate under a writer; stop the writer (the app exits), SIGTERM the sidecar, and cut S3
    `cut_at` seconds from that SIGTERM (negative: before it)."""
    with pod.through_forwarder() as fwd:
        sup = pod.start_replicate("--shutdown-timeout", "8", env=pod.env(AWS_ENDPOINT_URL_STS=pod.bed.endpoint))
        sup.wait_ready()
        writer = Writer(pod.db(), 0.01).start()
        time.sleep(1.5)
        if kill_litestream:  # S3 gone, Litestream restarted: its start-up check cannot stage the WAL
            fwd.cut()
            import os
            os.kill(sup.litestream_pid(), signal.SIGKILL)
            sup.wait_for(lambda: sup.count("litestream_started") == 2, 30, "restarted litestream")
            time.sleep(1.5)
        committed = writer.stop()
        if cut_at < 0 and not kill_litestream:
            time.sleep(max(0.0, 0.5 + cut_at))
            fwd.cut()
            time.sleep(-cut_at)
        sup.proc.send_signal(signal.SIGTERM)
        if cut_at >= 0 and not kill_litestream:
            time.sleep(cut_at)
            fwd.cut()
        rc = sup.proc.wait(timeout=60)
        pod.outputs.append(sup.output())
        return rc, committed, sup.output()


@pytest.mark.parametrize(("cut_at", "kill_litestream"), [
    (-1.0, False), (-0.2, False), (0.0, False), (0.3, False), (2.0, False), (0.0, True),
])
def test_exit_0_implies_every_committed_row_is_in_the_replica(pod: Pod, cut_at: float, kill_litestream: bool) -> None:
    """Item 5: the final check confirmed uploads that never happened (a failed `-once` was ignored,
    WAL frames never staged as LTX were invisible). Whatever the moment S3 goes away, 0 is a promise."""
    rc, committed, output = _trial(pod, cut_at, kill_litestream)
    assert rc in (0, ExitCode.FINAL_SYNC_UNCONFIRMED), output[-3000:]
    if rc == 0:
        forget_local(pod.db())
        run = pod.run("restore")
        assert run.returncode == 0, run.output
        missing = sorted(set(committed) - set(row_ids(pod.db()) if pod.db().exists() else []))
        assert not missing, f"exit 0 but {len(missing)} committed rows are not in the replica"
    else:
        assert '"final_position_unconfirmed"' in output
    if kill_litestream:
        assert rc == ExitCode.FINAL_SYNC_UNCONFIRMED, "rows written while Litestream could not stage them"


def test_unrunnable_litestream_exits_11_with_one_line(pod: Pod) -> None:
    """Item 7: replicate hung forever (even on SIGTERM) when the binary could not be executed."""
    bad = pod.root / "litestream"
    bad.write_bytes(b"\x7fELF not really")
    bad.chmod(0o755)
    run = pod.run("replicate", "--health-addr", f"127.0.0.1:{free_port()}", "--litestream", str(bad), timeout=60)
    assert run.returncode == ExitCode.LITESTREAM_MISSING, run.output
    errors = [line for line in run.output.splitlines() if '"level": "error"' in line]
    assert len(errors) == 1 and "--litestream" in errors[0] and "cannot run" in errors[0]


def test_stopped_while_waiting_for_sts_is_a_clean_stop(pod: Pod) -> None:
    """Item 15: nothing was ever replicated, so SIGTERM there exits 0 (it was 143)."""
    sup = pod.start_replicate(env=pod.env(AWS_ENDPOINT_URL_STS=f"http://127.0.0.1:{free_port()}"))
    sup.wait_for(lambda: sup.count("sts_unavailable") >= 1, 30, "STS attempts")
    assert sup.terminate(timeout=30) == 0, sup.output()[-2000:]
    assert sup.count("stopped_before_start") == 1


@contextlib.contextmanager
def blackhole() -> object:
    """A port that accepts connections and never answers (a hung STS)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    try:
        yield f"http://127.0.0.1:{s.getsockname()[1]}"
    finally:
        s.close()


def test_timeout_bounds_the_sts_step(pod: Pod) -> None:
    """Item 17: `restore --timeout 3` took 10.5 s against a hung STS."""
    with blackhole() as sts:
        run = pod.run("restore", "--timeout", "3", env=pod.env(AWS_ENDPOINT_URL_STS=sts))
    assert run.returncode == ExitCode.UNREACHABLE, run.output
    assert run.seconds < 8, f"--timeout 3 took {run.seconds:.1f}s"
    assert "--timeout 3s" in run.output


@pytest.mark.parametrize("command", ["check", "credentials"])
def test_check_and_credentials_stop_on_sigterm(pod: Pod, command: str) -> None:
    """Item 16: both ignored SIGINT/SIGTERM (22 s of ignored Ctrl-C was measured)."""
    with blackhole() as sts:
        sup = pod.start(command, "--timeout", "60", env=pod.env(AWS_ENDPOINT_URL_STS=sts))
        time.sleep(2)
        started = time.monotonic()
        rc = sup.terminate(timeout=30)
    assert rc == ExitCode.INTERRUPTED and time.monotonic() - started < 10, sup.output()[-2000:]


def test_shutdown_timeout_bounds_the_whole_shutdown_in_an_outage(pod: Pod) -> None:
    """Item 18: stop + catch-up + verification each took their own timeout (~3x), so the kubelet
    killed the sidecar before `final_position_unconfirmed` was ever logged."""
    with pod.through_forwarder() as fwd:
        sup = pod.start_replicate("--shutdown-timeout", "5")
        sup.wait_ready()
        writer = Writer(pod.db(), 0.01).start()
        time.sleep(1.5)
        fwd.cut()
        writer.stop()
        started = time.monotonic()
        rc = sup.terminate(timeout=60)
        took = time.monotonic() - started
    assert rc == ExitCode.FINAL_SYNC_UNCONFIRMED, sup.output()[-3000:]
    assert took < 11, f"--shutdown-timeout 5 took {took:.1f}s"
    assert sup.count("final_position_unconfirmed") == 1


def test_retries_after_expiry_back_off_instead_of_every_second(pod: Pod) -> None:
    """Item 11: after credentials expired, a fixed 1 s retry, an error line every second."""
    from tests.e2e.test_faults import sts_forwarder
    sts = sts_forwarder(pod)
    sup = pod.start_replicate("--duration-seconds", "10", env=pod.env(AWS_ENDPOINT_URL_STS=sts.url))
    try:
        sup.wait_ready()
        sts.cut()
        sup.wait_for(lambda: sup.count("credentials_expired") >= 1, 40, "credentials expired")
        first = time.monotonic()
        time.sleep(12)
        lines = sup.count("credentials_expired")
        assert lines <= 6, f"{lines} credentials_expired lines in 12 s: no backoff"
    finally:
        sts.stop()
    sup.terminate(timeout=60)
    assert time.monotonic() - first > 12


def test_integrity_check_opens_the_file_it_was_given(tmp_path: Path) -> None:
    """Item 6: an unquoted `file:` URI with '?' or '#' opened (and created) another file, so a
    garbage restore passed."""
    from supervisor.core.errors import RestoreFailed
    from supervisor.replica.localdb import integrity_check
    weird = tmp_path / "we?ird#dir"
    weird.mkdir()
    garbage = weird / "app.db"
    garbage.write_bytes(b"not a database at all" * 100)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(RestoreFailed):
        integrity_check(garbage)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # and nothing was created
    good = weird / "good.db"
    sqlite3.connect(good).execute("CREATE TABLE t(x)").connection.close()
    integrity_check(good)


def test_litestream_debug_logging_does_not_crash_restore(pod: Pod) -> None:
    """Item 9: `logging: level: debug` makes Litestream print `db=` fields: restore died with TypeError."""
    make_db(pod.db(), 30)
    push_with_litestream(pod, pod.db())
    pod.config.write_text("logging:\n  level: debug\n" + pod.config.read_text())
    run = pod.run("restore", "--log-level", "debug")
    assert run.returncode == 0, run.output[-3000:]
    assert row_ids(pod.db()) == list(range(1, 31)) and "Traceback" not in run.output
    assert '"level": "debug", "msg"' in run.output or '"msg": ' in run.output  # its lines were relayed
