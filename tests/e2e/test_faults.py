"""Faults on the real bed: STS down, credentials running out, RGW restarting, bad tokens,
a full disk, a missing binary. Each: the expected outcome, no committed row lost, no
half-written file left."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from supervisor.core.errors import ExitCode
from tests.bed.net import Forwarder
from tests.bed.pod import Pod, Supervisor, Writer, connect
from tests.bed.replicas import (
    commit_rows,
    make_db,
    push_with_litestream,
    replica_catches_up,
    restore_and_compare,
    rows_checkpointed_while_litestream_is_away,
)

pytestmark = pytest.mark.bed


def sts_forwarder(pod: Pod, start: bool = True) -> Forwarder:
    fwd = Forwarder(int(pod.bed.endpoint.rsplit(":", 1)[1]))
    if start:
        fwd.start()
    return fwd


def lag(sup: Supervisor, pod: Pod) -> float:
    return sup.metric("litestream_supervisor_replication_lag_seconds", f'{{db="{pod.db()}"}}')


def test_replicate_waits_not_ready_while_sts_is_down_then_recovers(pod: Pod) -> None:
    sts = sts_forwarder(pod, start=False)
    sup = pod.start_replicate(env=pod.env(AWS_ENDPOINT_URL_STS=sts.url))
    try:
        sup.wait_for(lambda: sup.metric("litestream_supervisor_sts_requests_total", '{result="unavailable"}') >= 2,
                     30, "failed STS attempts")
        status, body = sup.get("/readyz?verbose")
        assert status == 503 and "[-]credentials failed: no credentials yet" in body
        assert sup.get("/livez")[0] == 200
        sts.start()
        sup.wait_ready(60)
        writer = Writer(pod.db(), 0.05).start()
        time.sleep(3)
        committed = writer.stop()
        sup.scrape()
        assert sup.terminate() == 0, sup.output()[-3000:]
    finally:
        sts.stop()
    restore_and_compare(pod, committed)


def test_sts_down_past_credential_expiry_then_recovers(pod: Pod) -> None:
    sts = sts_forwarder(pod)
    sup = pod.start_replicate("--duration-seconds", "10", env=pod.env(AWS_ENDPOINT_URL_STS=sts.url))
    try:
        sup.wait_ready()
        writer = Writer(pod.db(), 0.05).start()
        time.sleep(1)
        sts.cut()
        sup.wait_for(lambda: sup.metric("litestream_supervisor_credentials_valid") == 0, 30, "credentials expired")
        status, body = sup.get("/readyz?verbose")
        assert status == 503 and "[-]credentials failed: credentials expired" in body
        # ...but the Component's readinessProbe keeps the app in its Service through the outage
        from tests.unit.test_manifests import kustomize
        (probe,) = {c["readinessProbe"]["httpGet"]["path"] for w in kustomize("base") if w["kind"] == "StatefulSet"
                    for c in w["spec"]["template"]["spec"]["initContainers"] if c["name"] == "litestream"}
        assert sup.get(probe)[0] == 200
        sup.wait_for(lambda: lag(sup, pod) > 2, 30, "lag grows without credentials")
        assert sup.count("credentials_expired") >= 1
        # the probe sends the store no listing it can only refuse (before: one every 0.5-1 s)
        (failed,) = [e for e in sup.events() if e.get("event") == "replica_probe_failed"]
        assert "not listed: the credentials expired" in failed["error"], failed
        sts.restore()
        sup.wait_for(lambda: sup.metric("litestream_supervisor_credentials_valid") == 1, 60, "credentials back")
        sup.wait_for(lambda: lag(sup, pod) < 2, 60, "caught up (a steady writer keeps a change in flight)")
        committed = writer.stop()
        # the 30 s backlog the fence left reaches the replica while the sidecar runs, before SIGTERM:
        # a SIGTERM 0.8 s after the restart once met Litestream mid-catch-up (CI, two workers) and
        # exited 10 ("changes never staged"), failing closed; that shutdown race is not this test's
        replica_catches_up(pod, committed)
        sup.scrape()
        assert sup.terminate() == 0, sup.output()[-3000:]
        # never restarted for a refresh; only a lease fence (an outage past the fence time) stops it,
        # and it resumes once the lease is confirmed again. The catch-up's documented fallback may too:
        # Litestream 0.5.17's close through the socket can outlast its 10 s while its SDK is still
        # fetching credentials again after they lapsed (CI: "get credentials: request canceled")
        assert sup.count("litestream_started") == 1 + sup.count("lease_fenced") + sup.count("catch_up_restart")
        assert sup.count("lease_fenced") == sup.count("lease_confirmed") and sup.count("litestream_died") == 0
    finally:
        sts.stop()
    restore_and_compare(pod, committed)


def test_rgw_restarted_mid_replication(pod: Pod) -> None:
    sup = pod.start_replicate()
    sup.wait_ready()
    writer = Writer(pod.db(), 0.05).start()
    time.sleep(1.5)
    pod.bed.cluster.stop_rgw()
    time.sleep(3)
    pod.bed.cluster.start_rgw()
    sup.wait_for(lambda: lag(sup, pod) < 2 and sup.metric(
        "litestream_supervisor_replica_probe_ok", f'{{db="{pod.db()}"}}') == 1, 60, "caught up after RGW restart")
    committed = writer.stop()
    time.sleep(0.5)
    assert sup.terminate() == 0, sup.output()[-3000:]
    restore_and_compare(pod, committed)


def test_garbage_or_deleted_token_keeps_current_credentials(pod: Pod) -> None:
    sup = pod.start_replicate()
    sup.wait_ready()
    pod.projector.rotate("this-is-not-a-jwt")
    sup.wait_for(lambda: sup.count("token_unreadable") >= 1, 20, "garbage token noticed")
    os.unlink(pod.projector.dir / "..data")
    sup.wait_for(lambda: sup.count("token_unreadable") >= 2, 20, "deleted token noticed")
    assert sup.get("/readyz")[0] == 200 and sup.metric("litestream_supervisor_credentials_valid") == 1
    pod.projector.rotate()
    sup.wait_for(lambda: sup.count("credentials_obtained", reason="token_rotated") >= 1, 20, "refresh on new token")
    sup.scrape()
    assert sup.terminate() == 0


def test_token_not_yet_valid_is_refused(pod: Pod) -> None:
    pod.projector.rotate(pod.bed.issuer.mint(issued_offset_seconds=3600))
    run = pod.run("restore", "--timeout", "20")
    assert run.returncode == ExitCode.CREDENTIALS_REFUSED, run.output
    assert "not valid yet" in run.output


def test_disk_full_during_restore_leaves_nothing(pod: Pod) -> None:
    make_db(pod.db(), 2000, payload_bytes=2048)  # ~5 MB
    push_with_litestream(pod, pod.db())
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(pod.data)], check=True)
    try:
        run = pod.run("restore")
        assert run.returncode == ExitCode.RESTORE_FAILED, run.output
        assert list(pod.data.iterdir()) == []
    finally:
        subprocess.run(["umount", str(pod.data)], check=True)


def test_missing_litestream_binary(pod: Pod) -> None:
    run = pod.run("restore", "--litestream", "/nonexistent/litestream")
    assert run.returncode == ExitCode.LITESTREAM_MISSING
    assert len(run.output.strip().splitlines()) == 1 and "--litestream" in run.output
    assert not pod.db().exists()


def test_config_typo_refuses_before_touching_anything(pod: Pod) -> None:
    pod.config.write_text(pod.config.read_text().replace("bucket:", "buckett:"))
    run = pod.run("replicate")
    assert run.returncode == ExitCode.USAGE and "unknown key 'buckett'" in run.output
    assert list(pod.data.iterdir()) == []


def test_broker_is_loopback_only_and_private_files_are_0600(pod: Pod) -> None:
    tmp = pod.root / "tmp"
    tmp.mkdir()
    sup = pod.start_replicate(env=pod.env(TMPDIR=str(tmp)))
    sup.wait_ready()
    creds = sup.served_credentials()
    pid = sup.litestream_pid()
    environ = Path(f"/proc/{pid}/environ").read_text().split("\0")
    env = dict(item.split("=", 1) for item in environ if "=" in item)
    url = env["AWS_CONTAINER_CREDENTIALS_FULL_URI"]
    assert url.startswith("http://127.0.0.1:")
    port = int(url.split(":")[2].split("/")[0])
    listeners = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    local = [fields[1] for fields in listeners if fields[3] == "0A" and int(fields[1].split(":")[1], 16) == port]
    assert local == [f"0100007F:{port:04X}"]  # LISTEN on 127.0.0.1 only
    v6 = [line.split() for line in Path("/proc/net/tcp6").read_text().splitlines()[1:]]
    assert not any(int(fields[1].split(":")[-1], 16) == port for fields in v6)
    for headers, code in (({}, 401), ({"Authorization": creds["BrokerAuthorization"][:-1] + "x"}, 403)):
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5)
        assert e.value.code == code
    private = [p for p in tmp.iterdir() if p.name.startswith("litestream-supervisor-")]
    assert private and all(oct(p.stat().st_mode & 0o777) == "0o700" for p in private)
    files = [f for p in private for f in p.iterdir()]
    assert files and all(oct(f.stat().st_mode & 0o777) == "0o600" for f in files)
    assert not any(creds["SecretAccessKey"] in f.read_text() or creds["Token"] in f.read_text() for f in files)
    sup.scrape()
    assert sup.terminate() == 0


def every_row_reaches_the_replica_across(pod: Pod, away: Callable[[Supervisor], None],
                                         back: Callable[[Supervisor], Supervisor]) -> tuple[Supervisor, bool]:
    """Litestream is sent `away` while the app commits and checkpoints on its open connection, then
    comes `back`: every committed row reaches the replica while it runs, and after SIGTERM (exit 0)
    a restore holds them all. Returns the last supervisor and whether the checkpoint completed."""
    sup = pod.start_replicate()
    sup.wait_ready()
    app = connect(pod.db())
    try:
        committed, completed = rows_checkpointed_while_litestream_is_away(pod, app, lambda: away(sup))
        sup = back(sup)
        committed += commit_rows(app, 5000, 5)
        replica_catches_up(pod, committed)
    finally:
        app.close()
    assert sup.terminate() == 0, sup.output()[-3000:]
    restore_and_compare(pod, committed)
    return sup, completed


def test_writes_checkpointed_while_litestream_was_down_reach_the_replica_while_it_runs(pod: Pod) -> None:
    """Litestream dies while the app commits and SQLite checkpoints (PASSIVE, as its automatic
    checkpoint does) and then restarts the WAL: a restarted Litestream 0.5.17 takes the new WAL for
    its own continuation and never uploads the checkpointed frames (reproduced with bare Litestream;
    it needs the app's connection open and the new WAL shorter than Litestream's last position).
    Invariant: once Litestream is back, every committed row reaches the replica, mid-run."""
    def restarted(sup: Supervisor) -> Supervisor:
        sup.wait_for(lambda: sup.count("litestream_started") == 2, 30, "Litestream restarted")
        return sup

    sup, completed = every_row_reaches_the_replica_across(
        pod, lambda sup: os.kill(sup.litestream_pid(), signal.SIGKILL), restarted)
    # the supervisor held the WAL from Litestream's death to its return: no restart behind its back
    assert not completed and sup.count("snapshot_requested") == 0


def test_a_sidecar_restarted_after_the_app_checkpointed_alone_replicates_every_row(pod: Pod) -> None:
    """The sidecar container restarts (OOM, liveness, a rollout of the sidecar alone) while the app
    keeps writing on the same volume: the next Litestream finds its old meta dir and the same hole."""
    def stopped(sup: Supervisor) -> None:
        assert sup.terminate() == 0, sup.output()[-3000:]

    def started_again(_: Supervisor) -> Supervisor:
        sup = pod.start_replicate()
        sup.wait_ready()
        return sup

    # no supervisor ran in between: the WAL restarted, and the next one turned that into a snapshot
    sup, completed = every_row_reaches_the_replica_across(pod, stopped, started_again)
    assert completed and sup.count("snapshot_requested") == 1
