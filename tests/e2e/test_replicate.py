"""`replicate` on the real bed, with 10-second credentials and a rotating token."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from supervisor.core.errors import ExitCode
from tests.bed.net import Forwarder, free_port
from tests.bed.pod import Pod, Supervisor, Writer, row_ids
from tests.bed.replicas import forget_local, make_db, push_with_litestream, restore_and_compare, restoring, role_s3

pytestmark = pytest.mark.bed
LIFETIME = "10"  # seconds: RGW's lowered minimum; refreshes every ~5 s


def health_pages(sup: Supervisor) -> list[str]:
    return [sup.get(p)[1] for p in ("/livez?verbose", "/readyz?verbose", "/metrics")]


def scan_for_secrets(pod: Pod, sup: Supervisor, secrets: list[str], pages: list[str]) -> None:
    text = "\n".join([*pod.outputs, sup.output(), *pages])
    for secret in secrets:
        assert len(secret) >= 8 and secret not in text


def writing_then_s3_cut(pod: Pod, fwd: Forwarder, *args: str) -> Supervisor:
    """Replicate under a fast writer, then cut S3 (and STS) so the tail cannot be uploaded."""
    sup = pod.start_replicate(*args)
    sup.wait_ready()
    Writer(pod.db(), 0.01).start()
    time.sleep(1.5)
    fwd.cut()
    return sup


def test_refreshes_and_rotations_without_restart_or_loss(pod: Pod) -> None:
    sup = pod.start_replicate("--duration-seconds", LIFETIME)
    sup.wait_ready()
    writer = Writer(pod.db(), 0.05).start()
    pod.projector.start(interval_seconds=7)
    secrets: set[str] = set()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        creds = sup.served_credentials()
        secrets.update((creds["SecretAccessKey"], creds["Token"], creds["BrokerAuthorization"], pod.projector.current))
        if sup.metric("litestream_supervisor_credential_refreshes_total") >= 3 and \
                sup.metric("litestream_supervisor_token_rotations_total") >= 2:
            break
        time.sleep(1)
    pod.projector.stop()
    assert sup.metric("litestream_supervisor_credential_refreshes_total") >= 3
    assert sup.metric("litestream_supervisor_token_rotations_total") >= 2
    assert sup.metric("litestream_supervisor_litestream_restarts_total") == 0
    assert sup.count("litestream_started") == 1
    assert sup.count("credentials_obtained", reason="token_rotated") >= 1
    status, body = sup.get("/readyz?verbose")
    assert status == 200 and "[+]credentials ok" in body and "[+]litestream ok" in body
    status, body = sup.get("/livez?verbose")
    assert status == 200 and "[+]event-loop ok" in body
    assert sup.metric("litestream_supervisor_credentials_valid") == 1
    assert sup.metric("litestream_supervisor_sts_requests_total", '{result="ok"}') >= 4
    # a burst, then SIGTERM straight away
    committed = writer.stop()
    burst_start = max(committed) + 1
    from tests.bed.pod import connect
    con = connect(pod.db())
    con.executemany("INSERT INTO rows(id, payload) VALUES (?, 'burst')",
                    ((i,) for i in range(burst_start, burst_start + 500)))
    con.commit()
    con.close()
    committed += list(range(burst_start, burst_start + 500))
    pages = health_pages(sup)
    assert sup.terminate() == 0, sup.output()[-3000:]
    assert sup.count("final_position_confirmed") == 1
    scan_for_secrets(pod, sup, sorted(secrets), pages)
    restore_and_compare(pod, committed)


def test_s3_outage_grows_lag_keeps_liveness_and_catches_up(pod: Pod) -> None:
    with pod.through_forwarder() as fwd:
        sup = pod.start_replicate("--duration-seconds", LIFETIME, "--max-lag", "3")
        sup.wait_ready()
        writer = Writer(pod.db(), 0.05).start()
        time.sleep(2)
        fwd.cut()
        sup.wait_for(lambda: sup.metric("litestream_supervisor_replication_lag_seconds",
                                        f'{{db="{pod.db()}"}}') > 4, 30, "lag > 4s during the outage")
        assert sup.get("/livez")[0] == 200
        status, body = sup.get("/readyz?verbose")
        assert status == 503 and "[-]lag failed" in body
        assert sup.metric("litestream_supervisor_replica_probe_ok", f'{{db="{pod.db()}"}}') == 0
        fwd.restore()
        # a steady writer keeps a change or two in flight: caught up means within a sync interval
        sup.wait_for(lambda: sup.metric("litestream_supervisor_replication_lag_seconds",
                                        f'{{db="{pod.db()}"}}') < 2, 60, "lag back under 2 s")
        sup.wait_ready(30)
        committed = writer.stop()
        time.sleep(0.5)
        assert sup.terminate() == 0, sup.output()[-3000:]
        # never restarted for a refresh; only a lease fence (an outage past the fence time) stops it,
        # and it resumes once the lease is confirmed again
        assert sup.count("litestream_started") == 1 + sup.count("lease_fenced")
        assert sup.count("lease_fenced") == sup.count("lease_confirmed") and sup.count("litestream_died") == 0
    restore_and_compare(pod, committed)


def test_sigterm_while_s3_unreachable_exits_nonzero_naming_the_position(pod: Pod) -> None:
    with pod.through_forwarder() as fwd:
        sup = writing_then_s3_cut(pod, fwd, "--shutdown-timeout", "3")
        time.sleep(2)
        rc = sup.terminate(timeout=60)
    assert rc == ExitCode.FINAL_SYNC_UNCONFIRMED, sup.output()[-3000:]
    events = [e for e in sup.events() if e.get("event") == "final_position_unconfirmed"]
    assert events and events[0]["level"] == "error" and len(str(events[0]["local_txid"])) == 16


def test_killed_litestream_is_restarted_and_counted(pod: Pod) -> None:
    sup = pod.start_replicate("--duration-seconds", LIFETIME)
    sup.wait_ready()
    writer = Writer(pod.db(), 0.05).start()
    time.sleep(1.5)
    first = sup.litestream_pid()
    os.kill(first, signal.SIGKILL)
    sup.wait_for(lambda: sup.metric("litestream_supervisor_litestream_restarts_total") == 1, 30, "restart counted")
    sup.wait_for(lambda: sup.count("litestream_started") == 2, 30, "second litestream")
    assert sup.litestream_pid() != first
    sup.wait_ready(30)
    time.sleep(2)
    committed = writer.stop()
    assert sup.terminate() == 0, sup.output()[-3000:]
    restore_and_compare(pod, committed)


def test_exec_mode_restores_runs_the_app_and_keeps_its_exit_code(pod: Pod) -> None:
    app = pod.root / "app.py"
    app.write_text(
        "import sqlite3, sys\n"
        f"con = sqlite3.connect({str(pod.db())!r})\n"
        "con.execute('PRAGMA journal_mode=WAL')\n"
        "con.execute('CREATE TABLE IF NOT EXISTS rows(id INTEGER PRIMARY KEY, payload TEXT)')\n"
        "start = con.execute('SELECT coalesce(max(id), 0) FROM rows').fetchone()[0]\n"
        "con.executemany('INSERT INTO rows VALUES (?, ?)', [(start + i, 'x') for i in range(1, 301)])\n"
        "con.commit()\n"
        "print(start + 300, flush=True)\n"
        "sys.exit(3)\n")
    import sys
    for expected_max in (300, 600):
        sup = pod.start_replicate("--exec", f"{sys.executable} {app}")
        rc = sup.proc.wait(timeout=90)
        pod.outputs.append(sup.output())
        assert rc == 3, sup.output()[-3000:]
        assert sup.count("final_position_confirmed") == 1
        forget_local(pod.db())  # next "pod" starts empty and must restore the app's rows first
        assert str(expected_max) in sup.output()
    run = pod.run("restore")
    assert run.returncode == 0, run.output
    assert pod.db().exists(), run.output + "\n".join(pod.outputs)
    assert row_ids(pod.db()) == list(range(1, 601)), run.output


def test_second_signal_stops_at_once(pod: Pod) -> None:
    with pod.through_forwarder() as fwd:
        sup = writing_then_s3_cut(pod, fwd, "--shutdown-timeout", "120")
        time.sleep(1)
        sup.proc.send_signal(signal.SIGTERM)
        sup.wait_for(lambda: sup.count("shutdown_started") == 1, 10, "graceful shutdown begun")
        time.sleep(1)
        started = time.monotonic()
        rc = sup.terminate(timeout=30)
        took = time.monotonic() - started
    assert rc == ExitCode.FINAL_SYNC_UNCONFIRMED, sup.output()[-3000:]
    assert took < 10 and sup.count("forced_stop") == 1 and sup.count("litestream_kill") == 1


def test_exec_mode_runs_litestream_with_its_socket_and_hands_the_wal_over(pod: Pod) -> None:
    """--exec restores before it starts Litestream: the restore's config must not replace the
    sidecar's. It did: Litestream ran without its control socket, the supervisor's read lock on the
    database (held until Litestream holds its own) was never released, and the WAL could not restart."""
    make_db(pod.db(), 50)
    push_with_litestream(pod, pod.db())
    forget_local(pod.db())
    sup = pod.start_replicate("--exec", "sleep 600")
    try:
        sup.wait_for(lambda: sup.get("/readyz")[0] == 200, 60, "ready")
        cmdline = Path(f"/proc/{sup.litestream_pid()}/cmdline").read_bytes().split(b"\0")
        config = yaml.safe_load(Path(cmdline[cmdline.index(b"-config") + 1].decode()).read_text())
        assert config["socket"]["enabled"] is True
        # /readyz does not wait for Litestream to listen (CI under load once saw it before the socket)
        sup.wait_for(lambda: Path(config["socket"]["path"]).is_socket(), 30, "Litestream's control socket")
        assert len(config["levels"]) == 3  # this sidecar's own compaction moments
        inodes = {os.stat(f"{pod.db()}{suffix}").st_ino for suffix in ("", "-shm")}

        def guard_released() -> bool:  # no POSIX lock of the supervisor's left on the database's files
            held = [line.split() for line in Path("/proc/locks").read_text().splitlines()]
            return not any(f[4] == str(sup.proc.pid) and int(f[5].rsplit(":", 1)[1]) in inodes for f in held
                           if len(f) > 5 and f[1] == "POSIX")
        sup.wait_for(guard_released, 20, "the WAL guard's read lock handed over to Litestream")
    finally:
        sup.terminate(timeout=30)
    assert sup.count("final_position_confirmed") == 1, sup.output()[-3000:]


def test_exec_mode_sigterm_during_restore_leaves_nothing(pod: Pod) -> None:
    make_db(pod.db(), 2000, payload_bytes=4096)
    push_with_litestream(pod, pod.db())
    with pod.through_forwarder(throttle_bytes_per_second=300_000):
        sup = pod.start_replicate("--exec", "true", env=pod.env(AWS_ENDPOINT_URL_STS=pod.bed.endpoint))
        sup.wait_for(lambda: restoring(pod), 30, "restore writing")
        rc = sup.terminate(timeout=30)
    assert rc == 143, sup.output()[-3000:]
    assert list(pod.data.iterdir()) == []  # no db, no temp file
    assert sup.count("stopped_before_start") == 1 and sup.count("app_started") == 0


def test_one_database_flags_replace_litestream_yml(pod: Pod) -> None:
    """--db/--bucket/--endpoint and the downward-API env derive the whole Litestream config
    (issue 13): no litestream.yml anywhere, and the same rows come back."""
    pod.config.unlink()
    env = pod.env(LITESTREAM_CONFIG=None, POD_SERVICE_ACCOUNT="app", POD_TEMPLATE_HASH="7d4b9c8f6d",
                  POD_NAME="web-7d4b9c8f6d-x2x9q", LITESTREAM_SUPERVISOR_WORKLOAD=None,
                  LITESTREAM_SUPERVISOR_DB=str(pod.db()), LITESTREAM_SUPERVISOR_BUCKET=pod.bed.role.bucket,
                  LITESTREAM_SUPERVISOR_ENDPOINT=pod.bed.endpoint)
    sup = pod.start_replicate(env=env)
    sup.wait_ready()
    writer = Writer(pod.db(), 0.02).start()
    time.sleep(2)
    committed = writer.stop()
    assert sup.terminate() == 0, sup.output()[-3000:]
    keys = [o["Key"] for o in role_s3(pod).list_objects_v2(Bucket=pod.bed.role.bucket,
                                                           Prefix="system:serviceaccount:tests:app/web/app.db/")
            .get("Contents", [])]
    assert keys  # the derived prefix: service account, then the Deployment's own name
    forget_local(pod.db())
    run = pod.run("restore", env=env)
    assert run.returncode == 0, run.output[-2000:]
    assert row_ids(pod.db()) == committed


GC_REPORTER = """
import gc, os, sys, threading, time
out = sys.argv[1]
during = []

def hook(event, args):
    if event == "import" and args[0] == "supervisor.jobs.replicate" and not during:
        during.append(gc.isenabled())  # the sidecar's machinery loads: still start-up

def report():
    while True:
        with open(out + ".tmp", "w") as f:
            f.write(f"{during} {gc.isenabled()} {gc.get_freeze_count()}")
        os.replace(out + ".tmp", out)
        time.sleep(0.1)

sys.addaudithook(hook)
threading.Thread(target=report, daemon=True).start()
sys.argv = ["supervisor", *sys.argv[2:]]
from supervisor.__main__ import main
main()
"""


def reporting_sidecar(pod: Pod, reporter: str, name: str) -> tuple[Supervisor, Path]:
    """A ready `replicate` sidecar started through `reporter` (a script that wraps the entry point and
    writes what it sees to the returned state file)."""
    state = pod.root / f"{name}-state"
    log = pod.root / f"{name}-sidecar.log"
    port = free_port()
    with open(log, "wb") as handle:
        proc = subprocess.Popen(
            [sys.executable, "-OO", "-c", reporter, str(state), "replicate", "--health-addr",
             f"127.0.0.1:{port}", "--lag-interval", "0.5"],
            env={**pod.env(), "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
            stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    pod.procs.append(proc)
    sup = Supervisor(proc, log, pod, health_port=port)
    sup.wait_ready()
    return sup, state


def test_the_sidecar_collects_garbage_again_once_litestream_runs(pod: Pod) -> None:
    """Start-up runs with the collector paused; the running sidecar must not stay that way (its
    memory would grow with every cycle it leaves)."""
    sup, state = reporting_sidecar(pod, GC_REPORTER, "gc")
    assert sup.count("litestream_started") == 1
    time.sleep(0.3)  # one more report after readiness
    during, enabled, frozen = state.read_text().rsplit(" ", 2)
    assert during == "[False]"  # paused while the sidecar's machinery was imported
    assert enabled == "True" and int(frozen) > 0  # resumed, start-up's objects frozen
    assert sup.terminate() == 0


MEMORY_REPORTER = """
import ctypes, os, sys, tempfile, time
out = sys.argv[1]
import supervisor.core.memory as startup
release = startup.release_memory

def arenas():
    libc = ctypes.CDLL(None)
    libc.fopen.restype = ctypes.c_void_p
    path = tempfile.mktemp()
    f = libc.fopen(path.encode(), b"w")
    libc.malloc_info(0, ctypes.c_void_p(f))
    libc.fclose(ctypes.c_void_p(f))
    with open(path) as r:
        n = r.read().count("<heap nr=")
    os.unlink(path)
    return n

def reported():
    done = release()
    with open(out + ".tmp", "w") as f:
        f.write(f"{time.time()} {done} {arenas()}")
    os.replace(out + ".tmp", out)
    return done

startup.release_memory = reported  # before supervisor.jobs.replicate imports it
sys.argv = ["supervisor", *sys.argv[2:]]
from supervisor.__main__ import main
main()
"""


def test_the_running_sidecar_trims_its_heap_once_after_ready_on_one_arena(pod: Pod) -> None:
    """Issue 29: start-up's freed heap goes back to the kernel once the sidecar is ready (not
    before: the first probe and the hand-over still allocate), and its threads (the STS head
    start's, Litestream's relays, every blocking call's) share one malloc arena."""
    sup, state = reporting_sidecar(pod, MEMORY_REPORTER, "memory")
    ready = time.time()
    assert not state.exists(), "trimmed before ready"
    sup.wait_for(state.exists, 15, "the heap trimmed after ready")
    at, done, arenas = state.read_text().split()
    assert done == "True" and float(at) - ready > 3, f"trimmed {float(at) - ready:.1f}s after ready"
    assert arenas == "1", f"{arenas} malloc arenas"
    assert sup.terminate() == 0
