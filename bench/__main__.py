"""`make bench`: every benchmark against the local bed, side by side with bare Litestream.

Writes bench/results.json and bench/RESULTS.md. Each figure is a median over --runs runs;
where there is a peer (bare Litestream with its own web-identity chain) the ratio is measured
in the same run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from bench.measure import LagSampler, commit_latencies, cpu_seconds, percentile, rss_mb, wait_until
from supervisor import __version__
from supervisor.litestream.config import Database, Replica
from tests.bed.pod import Pod, Writer, connect, row_ids
from tests.bed.replicas import bare_env, forget_local, make_db, push_with_litestream
from tests.bed.testbed import Bed, litestream_binary

HERE = Path(__file__).parent


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def median(values: list[float]) -> float:
    return round(statistics.median(values), 3) if values else float("nan")


def new_pod(bed: Bed, work: Path, names: tuple[str, ...] = ("app.db",)) -> Pod:
    root = work / f"pod-{uuid.uuid4().hex[:8]}"
    root.mkdir()
    pod = Pod.create(bed, root, prefix=f"bench/{uuid.uuid4().hex[:10]}")
    pod.write_config(names=names)
    return pod


def bare_replicate(pod: Pod) -> subprocess.Popen[bytes]:
    log_file = open(pod.root / "bare.log", "wb")  # noqa: SIM115 (the child owns it)
    return subprocess.Popen([litestream_binary(), "replicate", "-config", str(pod.config)], env=bare_env(pod),
                            stdout=log_file, stderr=subprocess.STDOUT)


def restore_phases(output: str, started: float) -> dict[str, float]:
    """Where one restore's time went, from its own log (wall-clock timestamps, exec at `started`)."""
    events = {}
    for line in output.splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict) and "event" in event:
            events.setdefault(event["event"], event)
    at = {name: datetime.datetime.fromisoformat(str(events[name]["timestamp"]).replace("Z", "+00:00")).timestamp()
          - started for name in ("credentials_obtained", "lease_acquired")}
    return {"exec_to_credentials": at["credentials_obtained"],
            "sts_exchange": float(events["credentials_obtained"]["sts_seconds"]),
            "credentials_to_lease": at["lease_acquired"] - at["credentials_obtained"],
            "litestream": float(events["restored"]["litestream_seconds"]),
            "integrity_check": float(events["restored"]["check_seconds"])}


def static_env(pod: Pod) -> dict[str, str]:
    """Bare Litestream with the same role's credentials given as keys: its run without its own STS call."""
    run = pod.run("credentials")
    assert run.returncode == 0, run.output[-2000:]
    creds = json.loads(next(line for line in run.output.splitlines() if line.startswith("{\"Version\"")))
    env = {k: v for k, v in bare_env(pod).items() if k not in ("AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE")}
    env.update(AWS_ACCESS_KEY_ID=creds["AccessKeyId"], AWS_SECRET_ACCESS_KEY=creds["SecretAccessKey"],
               AWS_SESSION_TOKEN=creds["SessionToken"])
    return env


def bench_restore(bed: Bed, work: Path, runs: int, megabytes: int) -> dict[str, Any]:
    pod = new_pod(bed, work)
    rows = megabytes * 1024 * 1024 // 4200
    log(f"restore: building a {megabytes} MB database ({rows} rows) and pushing it")
    make_db(pod.db(), rows, payload_bytes=2048)
    size = pod.db().stat().st_size
    push_with_litestream(pod, pod.db())
    keys = static_env(pod)
    ours, bare, bare_keys = [], [], []
    phases: dict[str, list[float]] = {}
    out = pod.root / "bare.db"

    def bare_run(env: dict[str, str]) -> float:
        forget_local(pod.db())
        out.unlink(missing_ok=True)
        t0 = time.monotonic()
        subprocess.run([litestream_binary(), "restore", "-config", str(pod.config), "-o", str(out), str(pod.db())],
                       env=env, check=True, capture_output=True, timeout=600)
        return time.monotonic() - t0

    def ours_run() -> None:
        forget_local(pod.db())
        started = time.time()
        run = pod.run("restore")
        assert run.returncode == 0, run.output[-2000:]
        ours.append(run.seconds)
        for name, value in restore_phases(run.output, started).items():
            phases.setdefault(name, []).append(value)

    for i in range(runs):
        # The order alternates: whichever runs right after another restore must not always be the same one.
        if i % 2:
            bare.append(bare_run(bare_env(pod)))
            bare_keys.append(bare_run(keys))
            ours_run()
        else:
            ours_run()
            bare.append(bare_run(bare_env(pod)))
            bare_keys.append(bare_run(keys))
        log(f"  run {i + 1}: supervisor {ours[-1]:.2f}s, bare litestream {bare[-1]:.2f}s "
            f"({bare_keys[-1]:.2f}s given keys)")
    pod.close()
    breakdown = {f"{name}_seconds": median(values) for name, values in phases.items()}
    return {"db_bytes": size, "supervisor_seconds": median(ours), "bare_seconds": median(bare),
            "ratio": round(median(ours) / median(bare), 3), "runs": runs,
            "supervisor_runs_seconds": [round(x, 3) for x in ours], "bare_runs_seconds": [round(x, 3) for x in bare],
            "bare_given_keys_seconds": median(bare_keys),
            "bare_given_keys_runs_seconds": [round(x, 3) for x in bare_keys],
            "supervisor_phases": breakdown,
            "supervisor_phases_runs_seconds": {k: [round(x, 3) for x in v] for k, v in phases.items()},
            "note": "both exchange the token at STS; the supervisor also takes the lease, lists the prefix and "
                    "runs PRAGMA integrity_check before the atomic rename. Phases come from the supervisor's "
                    "own log (exec -> credentials_obtained, with its sts_seconds -> lease_acquired; the "
                    "`restored` event's litestream_seconds and check_seconds); bare Litestream also runs given "
                    "the same role's credentials as keys, without its own STS exchange"}


def bench_restore_sizes(bed: Bed, work: Path, runs: int, sizes_mb: list[int]) -> list[dict[str, Any]]:
    out = []
    for mb in sizes_mb:
        out.append(bench_restore(bed, work, runs, mb))
        out[-1]["megabytes"] = mb
        out[-1]["overhead_seconds"] = round(out[-1]["supervisor_seconds"] - out[-1]["bare_seconds"], 3)
    return out


def bench_startup(bed: Bed, work: Path, runs: int) -> dict[str, Any]:
    to_child, to_ready = [], []
    for _ in range(runs):
        pod = new_pod(bed, work)
        t0 = time.time()
        sup = pod.start_replicate()
        wait_until(lambda s=sup: s.get("/readyz")[0] == 200, 60, "ready")
        to_ready.append(time.time() - t0)
        started = next(e for e in sup.events() if e.get("event") == "litestream_started")
        ts = datetime.datetime.fromisoformat(str(started["timestamp"]).replace("Z", "+00:00")).timestamp()
        to_child.append(ts - t0)
        sup.terminate()
        pod.close()
    log(f"startup: child {median(to_child):.2f}s, ready {median(to_ready):.2f}s")
    return {"exec_to_litestream_started_seconds": median(to_child),
            "exec_to_readyz_200_seconds": median(to_ready), "runs": runs,
            "exec_to_readyz_200_runs_seconds": [round(x, 3) for x in to_ready]}


def bench_idle(bed: Bed, work: Path, seconds: float, names: tuple[str, ...] = ("app.db",),
               write_interval: float | None = None) -> dict[str, Any]:
    pod = new_pod(bed, work, names)
    for name in names:
        connect(pod.db(name)).close()
    sup = pod.start_replicate()
    wait_until(lambda: sup.get("/readyz")[0] == 200, 60, "ready")
    child = sup.litestream_pid()
    time.sleep(2)
    stop = threading.Event()
    writers = []
    if write_interval:
        def write(db: Path) -> None:
            con = connect(db)
            i = 0
            while not stop.wait(write_interval):
                i += 1
                con.execute("INSERT INTO rows(id, payload) VALUES (?, 'x')", (i,))
                con.commit()
        writers = [threading.Thread(target=write, args=(pod.db(n),), daemon=True) for n in names]
        for w in writers:
            w.start()
    cpu0 = (cpu_seconds(sup.proc.pid), cpu_seconds(child))
    rss: list[tuple[float, float]] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        rss.append((rss_mb(sup.proc.pid), rss_mb(child)))
        time.sleep(1)
    cpu1 = (cpu_seconds(sup.proc.pid), cpu_seconds(child))
    stop.set()
    sup.terminate()
    pod.close()
    result = {
        "seconds": seconds, "databases": len(names),
        "supervisor_rss_mb": median([r[0] for r in rss]), "litestream_rss_mb": median([r[1] for r in rss]),
        "supervisor_rss_samples_mb": [r[0] for r in rss], "litestream_rss_samples_mb": [r[1] for r in rss],
        "supervisor_cpu_seconds": round(cpu1[0] - cpu0[0], 3), "litestream_cpu_seconds": round(cpu1[1] - cpu0[1], 3),
    }
    result["rss_ratio"] = round(result["supervisor_rss_mb"] / result["litestream_rss_mb"], 3)
    result["cpu_ratio"] = round(result["supervisor_cpu_seconds"] / max(result["litestream_cpu_seconds"], 0.001), 3)
    log(f"{'idle' if not write_interval else 'load'} x{len(names)}: {result}")
    return result


def replica_of(bed: Bed, pod: Pod) -> Database:
    return Database(pod.db(), Replica(bed.role.bucket, f"{pod.prefix}/app.db", bed.endpoint, bed.region, True),
                    pod.data / ".app.db-litestream")


def bench_refresh(bed: Bed, work: Path, seconds: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for who in ("supervisor", "bare"):
        pod = new_pod(bed, work)
        connect(pod.db()).close()
        if who == "supervisor":
            sup = pod.start_replicate("--duration-seconds", "10")
            wait_until(lambda s=sup: s.get("/readyz")[0] == 200, 60, "ready")
        else:
            proc = bare_replicate(pod)
            time.sleep(2)
        sampler = LagSampler(bed.admin_s3(), replica_of(bed, pod)).start()
        writer = Writer(pod.db(), 0.05).start()
        time.sleep(seconds)
        committed = writer.stop()
        time.sleep(2)
        sampler.stop()
        latencies = commit_latencies(bed.admin_s3(), replica_of(bed, pod), writer.commit_times)
        if who == "supervisor":
            refreshes = sup.metric("litestream_supervisor_credential_refreshes_total")
            restarts = sup.metric("litestream_supervisor_litestream_restarts_total")
            errors = sum(1 for e in sup.events() if e.get("event") == "litestream" and e.get("level") == "error")
            sup.terminate()
        else:
            refreshes, restarts = 0, 0
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
            errors = (pod.root / "bare.log").read_text().count("level=ERROR")
        forget_local(pod.db())
        run = pod.run("restore")
        lost = len(set(committed) - set(row_ids(pod.db()))) if run.returncode == 0 else len(committed)
        out[who] = {"commit_to_replica_p50_seconds": percentile(latencies, 50),
                    "commit_to_replica_p95_seconds": percentile(latencies, 95),
                    "commit_to_replica_max_seconds": percentile(latencies, 100),
                    "lag_p50_seconds": sampler.percentile(50), "lag_max_seconds": sampler.percentile(100),
                    "credential_refreshes": refreshes, "litestream_restarts": restarts,
                    "litestream_error_lines": errors, "rows_committed": len(committed), "rows_lost": lost}
        pod.close()
        log(f"refresh impact {who}: {out[who]}")
    for p in ("p50", "p95"):
        key = f"commit_to_replica_{p}_seconds"
        out[f"commit_to_replica_{p}_ratio"] = round(out["supervisor"][key] / out["bare"][key], 3)
    out["note"] = ("supervisor: 10 s credentials (refresh every ~5 s through the broker); bare: Litestream's own "
                   "web-identity chain, which sends no DurationSeconds, so RGW gives it 3600 s credentials "
                   "(RGW refuses a role MaxSessionDuration below 3600): it does not refresh within the window, "
                   "which makes it the no-refresh baseline")
    out["seconds"] = seconds
    return out


def bench_timeline(bed: Bed, work: Path, seconds: float = 60) -> dict[str, Any]:
    """Both side by side in one window, each behind its own S3 forwarder: a 20/s writer, the
    supervisor on 10 s credentials (a refresh every ~5 s), a token rotation at 1/4 of the window
    and an S3 outage (both forwarders cut) from 1/2 to 2/3. Every 0.5 s: replication lag
    (measured from outside, alike for both) and how long the credentials in use stay valid."""
    from tests.bed.net import Forwarder

    rotation_at, outage = seconds / 4, (seconds / 2, seconds * 2 / 3)
    pods, forwarders, samplers, writers = {}, {}, {}, {}
    for who in ("supervisor", "bare"):
        pod = new_pod(bed, work)
        connect(pod.db()).close()
        fwd = Forwarder(bed.cluster.rgw_port)
        fwd.start()
        pod.endpoint = fwd.url
        pod.write_config()
        pods[who], forwarders[who] = pod, fwd
    sup = pods["supervisor"].start_replicate(
        "--duration-seconds", "10", env=pods["supervisor"].env(AWS_ENDPOINT_URL_STS=bed.endpoint))
    wait_until(lambda: sup.get("/readyz")[0] == 200, 60, "ready")
    bare = bare_replicate(pods["bare"])
    bare_started = time.time()
    time.sleep(2)
    series: dict[str, dict[str, list[float]]] = {w: {"t": [], "lag_seconds": [], "credentials_left_seconds": []}
                                                 for w in pods}
    for who, pod in pods.items():
        samplers[who] = LagSampler(bed.admin_s3(), replica_of(bed, pod)).start()
        writers[who] = Writer(pod.db(), 0.05).start()
    t0 = time.time()
    rotated = cut = restored = False
    while (now := time.time() - t0) < seconds:
        if not rotated and now >= rotation_at:
            for pod in pods.values():
                pod.projector.rotate()
            rotated = True
        if not cut and now >= outage[0]:
            for fwd in forwarders.values():
                fwd.cut()
            cut = True
        if cut and not restored and now >= outage[1]:
            for fwd in forwarders.values():
                fwd.restore()
            restored = True
        for who in pods:
            lag = samplers[who].samples[-1] if samplers[who].samples else 0.0
            if who == "supervisor":
                expiry = sup.metric("litestream_supervisor_credentials_expiration_timestamp_seconds")
                left = max(0.0, expiry - time.time())
            else:  # Litestream's own chain: no DurationSeconds, so RGW grants 3600 s once at start
                left = max(0.0, bare_started + 3600 - time.time())
            series[who]["t"].append(round(now, 2))
            series[who]["lag_seconds"].append(round(lag, 3))
            series[who]["credentials_left_seconds"].append(round(left, 1))
        time.sleep(0.5)
    for who in pods:
        writers[who].stop()
        samplers[who].stop()
    refreshes = sup.metric("litestream_supervisor_credential_refreshes_total")
    sup.terminate()
    bare.send_signal(signal.SIGTERM)
    bare.wait(timeout=60)
    for who, pod in pods.items():
        forwarders[who].stop()
        pod.close()
    out: dict[str, Any] = {**series, "rotation": rotation_at, "outage": list(outage), "seconds": seconds,
                           "supervisor_refreshes": refreshes,
                           "credentials_note": "credentials valid for: supervisor from its metrics (10 s "
                           "credentials, refreshed at half-life); bare Litestream: 3600 s granted once at start "
                           "(its chain sends no DurationSeconds)"}
    for who in pods:
        lags = series[who]["lag_seconds"]
        out[f"{who}_lag_max_seconds"] = max(lags)
        out[f"{who}_lag_p50_seconds"] = percentile(lags, 50)
    log(f"timeline: lag max supervisor {out['supervisor_lag_max_seconds']} s, bare {out['bare_lag_max_seconds']} s, "
        f"{refreshes:.0f} refreshes")
    return out


def bench_rotation(bed: Bed, work: Path, rotations: int) -> dict[str, Any]:
    pod = new_pod(bed, work)
    sup = pod.start_replicate()
    wait_until(lambda: sup.get("/readyz")[0] == 200, 60, "ready")
    latencies = []
    for _ in range(rotations):
        before = sup.count("credentials_obtained", reason="token_rotated")
        t0 = time.time()
        pod.projector.rotate()
        wait_until(lambda b=before: sup.count("credentials_obtained", reason="token_rotated") > b, 30, "refresh")
        event = [e for e in sup.events() if e.get("event") == "credentials_obtained"
                 and e.get("reason") == "token_rotated"][-1]
        ts = datetime.datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00")).timestamp()
        latencies.append(ts - t0)
        time.sleep(1)
    sup.terminate()
    pod.close()
    log(f"rotation -> new credentials: median {median(latencies):.3f}s")
    return {"median_seconds": median(latencies), "max_seconds": round(max(latencies), 3), "rotations": rotations}


def bench_rpo(bed: Bed, work: Path, trials: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for who in ("supervisor", "bare"):
        lost_total, committed_total = 0, 0
        for _ in range(trials):
            pod = new_pod(bed, work)
            connect(pod.db()).close()
            if who == "supervisor":
                sup = pod.start_replicate()
                wait_until(lambda s=sup: s.get("/readyz")[0] == 200, 60, "ready")
            else:
                proc = bare_replicate(pod)
                time.sleep(1.5)
            writer = Writer(pod.db(), 0.0).start()
            time.sleep(1.5)
            committed = writer.stop()
            if who == "supervisor":
                sup.terminate()
            else:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)
            forget_local(pod.db())
            run = pod.run("restore")
            restored = set(row_ids(pod.db())) if run.returncode == 0 and pod.db().exists() else set()
            lost_total += len(set(committed) - restored)
            committed_total += len(committed)
            pod.close()
        out[who] = {"trials": trials, "rows_committed": committed_total, "rows_lost": lost_total}
        log(f"RPO {who}: {out[who]}")
    return out


def event_time(sup: Any, event: str) -> float:
    for e in sup.events():
        if e.get("event") == event:
            return datetime.datetime.fromisoformat(str(e["timestamp"]).replace("Z", "+00:00")).timestamp()
    raise AssertionError(f"no {event} in the supervisor's log")


def bench_lease(bed: Bed, work: Path, runs: int) -> dict[str, Any]:
    """What one writer per replica costs: restore and shutdown with the lease on vs off, and the
    hand-off from a stopping pod A to a waiting pod B."""
    out: dict[str, Any] = {}
    for mode in ("on", "off"):
        restores, shutdowns = [], []
        for _ in range(runs):
            pod = new_pod(bed, work)
            make_db(pod.db(), 2000)
            push_with_litestream(pod, pod.db())
            run = pod.run("restore", "--lease", mode)
            assert run.returncode == 0, run.output[-2000:]
            restores.append(run.seconds)
            sup = pod.start_replicate("--lease", mode)
            wait_until(lambda s=sup: s.get("/readyz")[0] == 200, 60, "ready")
            writer = Writer(pod.db(), 0.02)
            writer.committed.extend(range(2000))  # after the restored rows
            writer.start()
            time.sleep(1.5)
            assert writer.stop()[2000:] and not writer.errors
            t0 = time.monotonic()
            assert sup.terminate() == 0
            shutdowns.append(time.monotonic() - t0)
            pod.close()
        out[mode] = {"restore_seconds": median(restores), "shutdown_seconds": median(shutdowns)}
        log(f"lease {mode}: {out[mode]}")
    handoffs, waits = [], []
    for _ in range(runs):
        a_pod = new_pod(bed, work)
        a = a_pod.start_replicate()
        wait_until(lambda s=a: s.get("/readyz")[0] == 200, 60, "ready")
        writer = Writer(a_pod.db(), 0.02).start()
        root = work / f"pod-{uuid.uuid4().hex[:8]}"
        root.mkdir()
        b_pod = Pod.create(bed, root, prefix=a_pod.prefix)
        b = b_pod.start("restore")
        wait_until(lambda s=b: s.count("lease_wait") >= 1, 60, "B waiting")
        committed = writer.stop()
        t0 = time.time()
        assert a.terminate() == 0
        assert b.proc.wait(timeout=120) == 0
        assert set(committed) <= set(row_ids(b_pod.db()))
        handoffs.append(event_time(b, "lease_acquired") - event_time(a, "lease_released"))
        waits.append(event_time(b, "restored") - t0)
        a_pod.close()
        b_pod.close()
    out["handoff_release_to_acquired_seconds"] = median(handoffs)
    out["handoff_sigterm_to_restored_seconds"] = median(waits)
    out["restore_cost_seconds"] = round(out["on"]["restore_seconds"] - out["off"]["restore_seconds"], 3)
    out["shutdown_cost_seconds"] = round(out["on"]["shutdown_seconds"] - out["off"]["shutdown_seconds"], 3)
    log(f"lease hand-off: {handoffs} s; SIGTERM -> B restored {waits} s")
    return out


def bench_admission(work: Path, requests: int = 400, seconds: float = 5.0) -> dict[str, Any]:
    """The webhook over real TLS on loopback: latency of one AdmissionReview for a typical pod
    (sequential), and throughput with 4 concurrent clients; plus the pure injection alone."""
    import http.client
    import ssl as ssl_mod

    from supervisor.admission.inject import Defaults, inject
    from tests.unit.test_webhook import CA, review

    fixture = json.loads((Path(__file__).parents[1] / "tests/fixtures/admission/deployment-own-data-volume.pod.json")
                         .read_text())
    defaults = Defaults(bucket="litestream", endpoint="http://minio:9000", role_arn="arn:minio:iam:::role/x")
    pure = []
    for _ in range(2000):
        t0 = time.perf_counter()
        inject(fixture, defaults, "shop")
        pure.append(time.perf_counter() - t0)
    ca = CA()
    cert, key = work / "tls.crt", work / "tls.key"
    ca.issue(cert, key)
    port = __import__("tests.bed.net", fromlist=["free_port"]).free_port()
    proc = subprocess.Popen([sys.executable, "-m", "supervisor", "webhook", "--addr", f"127.0.0.1:{port}",
                             "--tls-cert-file", str(cert), "--tls-key-file", str(key), "--bucket", "litestream",
                             "--log-level", "error", "--drain-seconds", "0"],  # a bench: no endpoints to drain
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    body = json.dumps(review(fixture)).encode()
    context: ssl_mod.SSLContext = ca.client_context()

    def one() -> float:
        t0 = time.perf_counter()
        conn = http.client.HTTPSConnection("localhost", port, context=context, timeout=10)
        conn.request("POST", "/mutate", body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        conn.close()
        assert response.status == 200
        return time.perf_counter() - t0

    try:
        wait_until(lambda: subprocess.run(["bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{port}"],
                                          check=False).returncode == 0, 30, "webhook up")
        latencies = [one() for _ in range(requests)]
        done = [0]
        stop = time.monotonic() + seconds

        def client() -> None:
            while time.monotonic() < stop:
                one()
                done[0] += 1

        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    def ms(values: list[float], p: float) -> float:
        ordered = sorted(values)
        return round(ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] * 1000, 3)

    out = {"requests": requests, "p50_ms": ms(latencies, 50), "p99_ms": ms(latencies, 99),
           "throughput_per_second": round(done[0] / seconds, 1), "clients": 4,
           "inject_function_p50_ms": ms(pure, 50),
           "note": "one TLS connection per request (as the API server's client does when it does not reuse), "
                   "loopback, a Deployment's pod with the kube-api-access volume and managedFields"}
    log(f"admission: {out}")
    return out


def bench_image(bed: Bed, work: Path, runs: int, restore_runs: int = 15) -> dict[str, Any]:
    """Build the image (images/build-and-test.sh build) and measure it: the base, what the
    supervisor adds on top, and a container's start (`version`, as non-root on a read-only root)."""
    root = HERE.parent
    env = {**os.environ, "CONTAINERS_CONF": str(root / ".work/image/containers.conf"),
           "CONTAINERS_STORAGE_CONF": str(root / ".work/image/storage.conf")}
    subprocess.run(["bash", str(root / "images/build-and-test.sh"), "build"], check=True, env=env,
                   capture_output=True, timeout=1800)
    script = (root / "images/build-and-test.sh").read_text()
    base_tag = next(line.split("=", 1)[1] for line in script.splitlines() if line.startswith("BASE="))
    tag = "localhost/litestream-supervisor:0.1.0"

    def size(image: str) -> int:
        return int(subprocess.run(["podman", "image", "inspect", "--format", "{{.Size}}", image], env=env,
                                  check=True, capture_output=True, text=True).stdout.strip())

    starts = []
    for _ in range(max(3, runs)):
        t0 = time.monotonic()
        subprocess.run(["podman", "run", "--rm", "--read-only", "--user", "10001:10001", "--network", "none",
                        tag, "version"], env=env, check=True, capture_output=True, timeout=120)
        starts.append(time.monotonic() - t0)
    total, base = size(tag), size(base_tag)
    out = {"image_mb": round(total / 1e6, 1), "base_mb": round(base / 1e6, 1),
           "supervisor_added_mb": round((total - base) / 1e6, 1), "container_version_seconds": median(starts),
           "base": base_tag, **image_sidecar_idle(bed, work, seconds=20)}
    out["container_restore"] = image_restore(bed, work, restore_runs, megabytes=200)
    log(f"image: {out}")
    return out


def image_restore(bed: Bed, work: Path, runs: int, megabytes: int) -> dict[str, Any]:
    """Restore in the image as an initContainer runs it, against `litestream restore` run from the
    same image with its own web-identity chain: a container's start is in both."""
    from tests.image.test_image import TAG, for_the_container, podman, run_args

    pod = for_the_container(new_pod(bed, work))
    make_db(pod.db(), megabytes * 1024 * 1024 // 4200, payload_bytes=2048)
    push_with_litestream(pod, pod.db())
    ours_cmd = run_args(pod, "restore")
    bare_cmd = run_args(pod, "restore", "-config", "/etc/litestream/litestream.yml", "/data/app.db")
    bare_cmd[bare_cmd.index(TAG):bare_cmd.index(TAG)] = ["--entrypoint", "litestream"]
    ours, bare = [], []
    try:
        for i in range(runs):
            # alternated, as bench_restore: whichever runs right after the other is not always the same one
            pairs = ((ours_cmd, ours), (bare_cmd, bare))
            for cmd, times in (pairs if i % 2 == 0 else pairs[::-1]):
                forget_local(pod.db())
                t0 = time.monotonic()
                podman(*cmd, timeout=600)
                times.append(time.monotonic() - t0)
                assert pod.db().stat().st_size > megabytes * 1_000_000 // 2
    finally:
        pod.close()
    log(f"  image restore of {megabytes} MB: supervisor {median(ours)}s, bare litestream {median(bare)}s")
    return {"megabytes": megabytes, "supervisor_seconds": median(ours), "bare_seconds": median(bare),
            "ratio": round(median(ours) / median(bare), 3), "supervisor_runs_seconds": [round(x, 3) for x in ours],
            "bare_runs_seconds": [round(x, 3) for x in bare]}


def image_sidecar_idle(bed: Bed, work: Path, seconds: float) -> dict[str, Any]:
    """The sidecar as users run it: `replicate` in the image (non-root, read-only root), idle; the
    RSS of the container's PID 1 (the supervisor) and of its Litestream child, from the host."""
    from tests.bed.net import free_port
    from tests.image.test_image import for_the_container, podman, run_args

    pod = for_the_container(new_pod(bed, work))
    connect(pod.db()).close()
    subprocess.run(["chown", "-R", "10001:10001", str(pod.data)], check=True)
    port, name = free_port(), f"bench-{uuid.uuid4().hex[:8]}"
    podman(*run_args(pod, "replicate", "--health-addr", f"127.0.0.1:{port}", name=name, detach=True))
    try:
        wait_until(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2).status == 200,
                   60, "the container's sidecar ready")
        pid = int(podman("inspect", "--format", "{{.State.Pid}}", name).stdout.strip())
        child = int(Path(f"/proc/{pid}/task/{pid}/children").read_text().split()[0])
        time.sleep(2)
        rss = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            rss.append((rss_mb(pid), rss_mb(child)))
            time.sleep(1)
    finally:
        podman("stop", "-t", "30", name, timeout=60, check=False)
        podman("rm", "-f", name, check=False)
        pod.close()
    return {"container_supervisor_rss_mb": median([r[0] for r in rss]),
            "container_litestream_rss_mb": median([r[1] for r in rss]),
            "container_supervisor_rss_samples_mb": [r[0] for r in rss], "container_idle_seconds": seconds}


# Why each headline figure moved this round (RESULTS.md's "what changed"); a figure that moved
# without an entry here is reported as unexplained.
WHY = {
    "restore overhead": "the same change as restore: exec -> credentials 0.21 -> 0.155 s; the overhead is now "
                        "0.13-0.15 s at every size in this run (0.146, 0.147, 0.134, 0.137 s at 25, 50, 100 and "
                        "230 MB), where it spread 0.18-0.26 s before",
    "restore": "the first STS request is sent as plain HTTP before botocore is imported (it left ~130 ms after "
               "exec, now ~70 ms) and STS answers while the rest loads; botocore's parser reads the answer. "
               "Same-session A/B against the previous commit (alternated runs on this machine's bed): exec -> "
               "credentials 0.208 -> 0.155 s, a small db's restore 0.312 -> 0.273 s, the 230 MB restore "
               "2.002 -> 1.945 s beside bare Litestream's 1.814 s (1.104 -> 1.072). The run count per size "
               "went from 9 to 15: one run in ten on this 2-core machine is ~0.3 s off, which moved a 9-run "
               "median ratio by a few percent (1.127 and 1.087 for the same commit)",
    "start to ready": "the sidecar sends its first STS request the same way (before botocore, asyncio and "
                      "structlog load): Litestream starts once the credentials are there",
}


def changes(previous: dict[str, Any] | None, results: dict[str, Any]) -> list[str]:
    """Figures that moved by more than 5 % since the previous results.json, and why."""
    if not previous:
        return []
    figures = {
        "idle RSS": ("idle", "supervisor_rss_mb", "MB"),
        "restore": ("restore", "ratio", "x"),
        "restore overhead": ("restore", "overhead_seconds", "s"),
        "start to ready": ("startup", "exec_to_readyz_200_seconds", "s"),
        "scale RSS, 20 dbs": ("scale_20", "supervisor_rss_mb", "MB"),
        "image": ("image", "image_mb", "MB"),
    }
    # figures recorded before the benchmark measured them (the image size was in the README)
    recorded = {("image", "image_mb"): 254.0}
    lines = []
    for label, (bench, key, unit) in figures.items():
        before = previous["benchmarks"].get(bench, {}).get(key, recorded.get((bench, key)))
        now = results["benchmarks"].get(bench, {}).get(key)
        threshold = 0.01 if unit == "x" else 0.05  # a ratio's few percent are the point
        if before is None or now is None or abs(now - before) <= threshold * abs(before):
            continue
        why = next((text for name, text in WHY.items() if label.startswith(name)), "not explained: noise or "
                   "a change not listed in bench/__main__.py WHY")
        lines.append(f"| {label} | {before} {unit} | {now} {unit} | {why} |")
    if not lines:
        return []
    # a results.json updated with --only holds figures of several dates: name them all
    dates = sorted({str(previous.get("date"))} | {str(v["date"]) for v in previous["benchmarks"].values()
                                                   if isinstance(v, dict) and "date" in v})
    return [f"## What changed since the previous results ({', '.join(dates)})", "", "| figure | before | now | why |",
            "|---|---|---|---|", *lines, ""]


def caught_up_after_outage(series: dict[str, list[float]], outage_end: float, normal_seconds: float = 2.0) -> float:
    """Seconds from S3's return until the lag is back under `normal_seconds` (from the raw samples)."""
    for t, lag in zip(series["t"], series["lag_seconds"], strict=True):
        if t >= outage_end and lag < normal_seconds:
            return round(max(0.0, t - outage_end), 1)
    return float("nan")


def restore_overhead_note(restore: dict[str, Any]) -> list[str]:
    """The restore's fixed overhead, phase by phase, in words (from the same run's figures)."""
    ph = restore.get("supervisor_phases", {})
    if "sts_exchange_seconds" not in ph or "overhead_seconds" not in restore:
        return []
    startup = round(ph["exec_to_credentials_seconds"] - ph["sts_exchange_seconds"], 3)
    return [f"- restore overhead ({restore['overhead_seconds']} s on {restore['db_bytes'] // 1_000_000} MB): the "
            f"supervisor has credentials {ph['exec_to_credentials_seconds']} s after exec. Its STS request leaves "
            f"after {startup} s (Python starting, flags, config and token read, sent as plain HTTP before botocore "
            f"is imported) and its answer is taken {ph['sts_exchange_seconds']} s later, once botocore, asyncio, "
            "structlog and the restore machinery have loaded: the round trip, which bare Litestream makes too "
            "(in Go, ~0.02 s after its exec), runs beside those imports, the part bare Litestream does not "
            f"have. Then the lease ({ph['credentials_to_lease_seconds']} s, with S3's model loaded for its "
            "client) and, after Litestream, the "
            f"integrity check ({ph['integrity_check_seconds']} s): what failing closed costs. Litestream's own run "
            f"under the supervisor: {ph['litestream_seconds']} s (bare, given keys: "
            f"{restore['bare_given_keys_seconds']} s). None of it grows with the database but the check "
            f"(~{ph['integrity_check_seconds'] / restore['db_bytes'] * 1e9:.2f} s per GB), so the ratio falls "
            "as the database grows"]


def write_markdown(results: dict[str, Any], path: Path, plots: list[str] | None = None,
                   previous: dict[str, Any] | None = None) -> None:
    r = results["benchmarks"]
    rows = [
        (f"restore of a {r['restore']['db_bytes'] // 1_000_000} MB db (wall)",
         f"{r['restore']['supervisor_seconds']} s", f"{r['restore']['bare_seconds']} s", r["restore"]["ratio"]),
        ("exec -> Litestream child started", f"{r['startup']['exec_to_litestream_started_seconds']} s", "", ""),
        ("exec -> /readyz 200", f"{r['startup']['exec_to_readyz_200_seconds']} s", "", ""),
        (f"idle RSS ({r['idle']['seconds']:g} s)", f"{r['idle']['supervisor_rss_mb']} MB",
         f"{r['idle']['litestream_rss_mb']} MB (its child)", r["idle"]["rss_ratio"]),
        (f"idle CPU ({r['idle']['seconds']:g} s)", f"{r['idle']['supervisor_cpu_seconds']} s",
         f"{r['idle']['litestream_cpu_seconds']} s (its child)", r["idle"]["cpu_ratio"]),
        ("commit -> in the replica, p50, under load with refreshes",
         f"{r['refresh']['supervisor']['commit_to_replica_p50_seconds']} s",
         f"{r['refresh']['bare']['commit_to_replica_p50_seconds']} s", r["refresh"]["commit_to_replica_p50_ratio"]),
        ("commit -> in the replica, p95", f"{r['refresh']['supervisor']['commit_to_replica_p95_seconds']} s",
         f"{r['refresh']['bare']['commit_to_replica_p95_seconds']} s", r["refresh"]["commit_to_replica_p95_ratio"]),
        ("commit -> in the replica, max", f"{r['refresh']['supervisor']['commit_to_replica_max_seconds']} s",
         f"{r['refresh']['bare']['commit_to_replica_max_seconds']} s", ""),
        ("upload lag (oldest local LTX not in the replica), max", f"{r['refresh']['supervisor']['lag_max_seconds']} s",
         f"{r['refresh']['bare']['lag_max_seconds']} s", ""),
        ("credential refreshes / Litestream restarts in the window",
         f"{r['refresh']['supervisor']['credential_refreshes']:.0f} / "
         f"{r['refresh']['supervisor']['litestream_restarts']:.0f}",
         f"{r['refresh']['bare']['credential_refreshes']} / {r['refresh']['bare']['litestream_restarts']}", ""),
        ("token rotation -> new credentials (median)", f"{r['rotation']['median_seconds']} s", "", ""),
        ("RPO: rows lost on SIGTERM", f"{r['rpo']['supervisor']['rows_lost']} of "
         f"{r['rpo']['supervisor']['rows_committed']} ({r['rpo']['supervisor']['trials']} trials)",
         f"{r['rpo']['bare']['rows_lost']} of {r['rpo']['bare']['rows_committed']}", ""),
        ("scale: supervisor RSS, 1 vs 20 dbs", f"{r['scale_1']['supervisor_rss_mb']} MB",
         f"{r['scale_20']['supervisor_rss_mb']} MB (20 dbs)",
         round(r["scale_20"]["supervisor_rss_mb"] / r["scale_1"]["supervisor_rss_mb"], 3)),
        ("scale: supervisor CPU, 1 vs 20 dbs", f"{r['scale_1']['supervisor_cpu_seconds']} s",
         f"{r['scale_20']['supervisor_cpu_seconds']} s (20 dbs)", ""),
    ]
    if "restore" in r and "overhead_seconds" in r["restore"]:
        rows.insert(1, ("restore: fixed overhead (supervisor - bare, same db)", f"{r['restore']['overhead_seconds']} s",
                        "", ""))
    if "sts_exchange_seconds" in r.get("restore", {}).get("supervisor_phases", {}):
        ph = r["restore"]["supervisor_phases"]
        rows[2:2] = [
            ("restore: exec -> credentials = until the STS request leaves + until its answer is taken "
             "(the imports, the round trip beside them; bare makes the same exchange)",
             f"{ph['exec_to_credentials_seconds']} s = "
             f"{round(ph['exec_to_credentials_seconds'] - ph['sts_exchange_seconds'], 3)} + "
             f"{ph['sts_exchange_seconds']} s", f"bare: {r['restore']['bare_seconds']} s with its exchange, "
             f"{r['restore']['bare_given_keys_seconds']} s given keys", ""),
            ("restore: credentials -> lease held; integrity check", f"{ph['credentials_to_lease_seconds']} s; "
             f"{ph['integrity_check_seconds']} s", "none; none", ""),
            ("restore: Litestream's own run under the supervisor / bare given keys", f"{ph['litestream_seconds']} s",
             f"{r['restore']['bare_given_keys_seconds']} s",
             round(ph["litestream_seconds"] / r["restore"]["bare_given_keys_seconds"], 3)),
        ]
    if "timeline" in r:
        t = r["timeline"]
        rows += [
            (f"timeline ({t['seconds']:g} s: refreshes, a rotation, an S3 outage): lag max / p50",
             f"{t['supervisor_lag_max_seconds']} s / {t['supervisor_lag_p50_seconds']} s",
             f"{t['bare_lag_max_seconds']} s / {t['bare_lag_p50_seconds']} s", ""),
            (f"timeline: caught up after S3 came back ({t['outage'][1] - t['outage'][0]:g} s outage)",
             f"{caught_up_after_outage(t['supervisor'], t['outage'][1])} s",
             f"{caught_up_after_outage(t['bare'], t['outage'][1])} s", ""),
        ]
    if "image" in r:
        i = r["image"]
        rows += [
            ("image size: total (base + supervisor)", f"{i['image_mb']} MB",
             f"{i['base_mb']} MB base + {i['supervisor_added_mb']} MB added", ""),
            ("container start: `podman run ... version` (read-only root, non-root)",
             f"{i['container_version_seconds']} s", "", ""),
            *([(f"idle RSS in the image ({i['container_idle_seconds']:g} s, `replicate` as a container)",
                f"{i['container_supervisor_rss_mb']} MB", f"{i['container_litestream_rss_mb']} MB (its child)",
                round(i["container_supervisor_rss_mb"] / i["container_litestream_rss_mb"], 3))]
              if "container_supervisor_rss_mb" in i else []),
            *([(f"restore of a {i['container_restore']['megabytes']} MB db in the image (container start in both)",
                f"{i['container_restore']['supervisor_seconds']} s", f"{i['container_restore']['bare_seconds']} s",
                i["container_restore"]["ratio"])] if "container_restore" in i else []),
        ]
    if "admission" in r:
        a = r["admission"]
        rows += [
            ("admission: one AdmissionReview over TLS, p50 / p99", f"{a['p50_ms']} ms / {a['p99_ms']} ms", "", ""),
            (f"admission: throughput, {a['clients']} clients", f"{a['throughput_per_second']} /s", "", ""),
            ("admission: the injection function alone, p50", f"{a['inject_function_p50_ms']} ms", "", ""),
        ]
    if "lease" in r:
        lease = r["lease"]
        rows += [
            ("lease: restore of a 2000-row db, lease on vs off", f"{lease['on']['restore_seconds']} s",
             f"{lease['off']['restore_seconds']} s (off)", f"{lease['restore_cost_seconds']:+} s"),
            ("lease: SIGTERM -> exit (final upload, verify, release), on vs off",
             f"{lease['on']['shutdown_seconds']} s", f"{lease['off']['shutdown_seconds']} s (off)",
             f"{lease['shutdown_cost_seconds']:+} s"),
            ("lease hand-off: A released -> B acquired", f"{lease['handoff_release_to_acquired_seconds']} s", "", ""),
            ("lease hand-off: A SIGTERM -> B restored", f"{lease['handoff_sigterm_to_restored_seconds']} s", "", ""),
        ]
    rerun: dict[str, list[str]] = {}
    for name, value in r.items():
        if isinstance(value, dict) and value.get("date", results["date"]) != results["date"]:
            rerun.setdefault(value["date"], []).append(name)
    again = "".join(f" Rerun on {day} (`--only {','.join(names)}`): those rows and their peers come from that run."
                    for day, names in sorted(rerun.items()))
    lines = [
        "# Benchmarks", "",
        f"Measured {results['date']} on {results['machine']} by `make bench` (medians of {results['runs']} runs, "
        f"{r.get('restore_sizes', [{}])[0].get('runs', results['runs'])} per restore size; "
        f"the peer is bare Litestream 0.5.17 with its own web-identity chain, in the same run).{again}", "",
        "| measure | litestream-supervisor | peer | ratio |", "|---|---|---|---|",
    ]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    lines += ["", *changes(previous, results)]
    captions = {"timeline.png": "Replication lag and credential validity through refreshes, a token rotation "
                                "and an S3 outage, supervisor and bare Litestream in the same window",
                "restore-sizes.png": "Restore wall time per database size (integrity check on)"}
    for plot in plots or []:
        lines += [f"![{captions.get(plot, plot)}]({plot})", "", f"*{captions.get(plot, plot)}.*", ""]
    lines += ["", "Notes:", "",
              "- how it runs: the supervisor as `python -OO -m supervisor` (the image sets PYTHONOPTIMIZE=2), "
              "bytecode precompiled; the bed's RGW with Nagle off (`tcp_nodelay=1`, as MinIO has it).",
              f"- restore: {r['restore']['note']}.", *restore_overhead_note(r["restore"]),
              f"- refresh impact: {r['refresh']['note']}.",
              "- commit -> in the replica: for each commit of a 20-per-second writer, the time until the first "
              "level-0 LTX upload after it (S3 LastModified); Litestream syncs every second.",
              "- lease: B's restore waits while A holds the lease; it polls every 2 s, so the hand-off after A's "
              "release is at most about 2 s (the TTL is only waited out when a holder crashed). Its cost on "
              "restore is one GET and one PUT of the lease, with the conditional-write probe (two PUTs at once) "
              "beside them; on shutdown one PUT (the release), within noise."
              + (f" Lease rows measured {r['lease']['date']} (`python -m bench --only lease`)."
                 if r["lease"].get("date") and r["lease"]["date"] != results["date"] else ""),
              "- admission: " + (r["admission"]["note"] + "." if "admission" in r else "not measured."),
              "- timeline: " + (r["timeline"]["credentials_note"] + "; lag sampled every 0.5 s from outside (local "
                                "LTX files vs the replica listing), the same way for both. After the outage "
                                "each Litestream uploads again at its next sync attempt, and its attempts back off "
                                "(the sync interval, doubled after each failure): when that lands after S3 returns "
                                "differs from run to run for either of the two (9 timeline runs on 2026-11-29, from "
                                "their lag max: back 0-14 s after S3 returned under the supervisor, 0-19 s bare; "
                                "the supervisor's the later of the two in 6 of them, bare's in 2)."
                                if "timeline" in r
                                else "not measured."),
              "- image: " + (f"built by images/build-and-test.sh on {r['image']['base']}; sizes from `podman image "
                             "inspect`." if "image" in r else "not measured."),
              "- scale: light load (one commit per second per database) for the window; "
              "RSS and CPU of the supervisor process only (Litestream is one child for all databases).",
              "- raw figures: `bench/results.json`.", ""]
    path.write_text("\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--restore-mb", type=int, nargs="+", default=[25, 50, 100, 200],
                        help="database sizes for the restore benchmark; the largest gives the headline ratio")
    parser.add_argument("--restore-runs", type=int, default=15,
                        help="runs per size (the ratio is a difference of a few percent, and one run in ten on a "
                             "2-core machine is 0.3 s off: more runs than the rest)")
    parser.add_argument("--idle-seconds", type=float, default=60)
    parser.add_argument("--load-seconds", type=float, default=40)
    parser.add_argument("--timeline-seconds", type=float, default=60)
    parser.add_argument("--rpo-trials", type=int, default=10)
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--compare-with", type=Path,
                        help="results.json to report changes against (default: the one being replaced)")
    parser.add_argument("--only", help="comma-separated benchmarks to run, updating results.json in place: "
                        + ", ".join(BENCHMARKS))
    args = parser.parse_args()
    only = [name.strip() for name in args.only.split(",")] if args.only else list(BENCHMARKS)
    unknown = [name for name in only if name not in BENCHMARKS]
    if unknown:
        parser.error(f"--only: unknown benchmark {', '.join(unknown)}; expected some of {', '.join(BENCHMARKS)}")
    if args.only and not (args.out / "results.json").is_file():
        parser.error(f"--only updates {args.out / 'results.json'}, which does not exist: run every benchmark "
                     "first (make bench)")
    work = Path(tempfile.mkdtemp(prefix="litestream-supervisor-bench-"))
    log(f"bed in {work}")
    bed = Bed.up(work / "bed")
    today = datetime.date.today().isoformat()
    try:
        results: dict[str, Any] = {
            "date": today, "version": __version__,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
            "runs": args.runs, "benchmarks": {},
        }
        if args.only and (args.out / "results.json").exists():
            results = json.loads((args.out / "results.json").read_text())
        b = results["benchmarks"]
        for name in only:
            value = BENCHMARKS[name](bed, work, args)
            if name == "restore":
                b["restore_sizes"] = value
                b["restore"] = max(value, key=lambda r: r["db_bytes"])
                value = b["restore"]
            else:
                b[name] = value
            if args.only:
                value["date"] = today
        args.out.mkdir(parents=True, exist_ok=True)
        baseline = args.compare_with or args.out / "results.json"
        previous = json.loads(baseline.read_text()) if baseline.exists() else None
        (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        from bench.plots import draw
        plots = draw(results, args.out)
        write_markdown(results, args.out / "RESULTS.md", plots, previous)
        log(f"wrote {args.out / 'results.json'}, {args.out / 'RESULTS.md'} and {', '.join(plots)}")
    finally:
        bed.down()
        shutil.rmtree(work, ignore_errors=True)
    return 0


BENCHMARKS: dict[str, Any] = {
    "restore": lambda bed, work, a: bench_restore_sizes(bed, work, a.restore_runs, sorted(a.restore_mb)),
    "startup": lambda bed, work, a: bench_startup(bed, work, a.runs),
    "idle": lambda bed, work, a: bench_idle(bed, work, a.idle_seconds),
    "refresh": lambda bed, work, a: bench_refresh(bed, work, a.load_seconds),
    "timeline": lambda bed, work, a: bench_timeline(bed, work, a.timeline_seconds),
    "rotation": lambda bed, work, a: bench_rotation(bed, work, max(5, a.runs)),
    "rpo": lambda bed, work, a: bench_rpo(bed, work, a.rpo_trials),
    "scale_1": lambda bed, work, a: bench_idle(bed, work, 20, ("db0.db",), write_interval=1.0),
    "scale_20": lambda bed, work, a: bench_idle(bed, work, 20, tuple(f"db{i}.db" for i in range(20)),
                                                write_interval=1.0),
    "lease": lambda bed, work, a: bench_lease(bed, work, a.runs),
    "admission": lambda bed, work, a: bench_admission(work),
    "image": lambda bed, work, a: bench_image(bed, work, a.runs, a.restore_runs),
}


if __name__ == "__main__":
    sys.exit(main())
