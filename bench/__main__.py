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
import uuid
from pathlib import Path
from typing import Any

from bench.measure import LagSampler, commit_latencies, cpu_seconds, percentile, rss_mb, wait_until
from supervisor import __version__
from supervisor.config import Database, Replica
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


def bench_restore(bed: Bed, work: Path, runs: int, megabytes: int) -> dict[str, Any]:
    pod = new_pod(bed, work)
    rows = megabytes * 1024 * 1024 // 4200
    log(f"restore: building a {megabytes} MB database ({rows} rows) and pushing it")
    make_db(pod.db(), rows, payload_bytes=2048)
    size = pod.db().stat().st_size
    push_with_litestream(pod, pod.db())
    ours, bare = [], []
    for i in range(runs):
        forget_local(pod.db())
        run = pod.run("restore")
        assert run.returncode == 0, run.output[-2000:]
        ours.append(run.seconds)
        forget_local(pod.db())
        out = pod.root / "bare.db"
        out.unlink(missing_ok=True)
        t0 = time.monotonic()
        subprocess.run([litestream_binary(), "restore", "-config", str(pod.config), "-o", str(out), str(pod.db())],
                       env=bare_env(pod), check=True, capture_output=True, timeout=600)
        bare.append(time.monotonic() - t0)
        log(f"  run {i + 1}: supervisor {ours[-1]:.2f}s, bare litestream {bare[-1]:.2f}s")
    pod.close()
    return {"db_bytes": size, "supervisor_seconds": median(ours), "bare_seconds": median(bare),
            "ratio": round(median(ours) / median(bare), 3), "runs": runs,
            "note": "both exchange the token at STS; the supervisor also lists the prefix and runs "
                    "PRAGMA integrity_check before the atomic rename"}


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
            "exec_to_readyz_200_seconds": median(to_ready), "runs": runs}


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

    from supervisor.inject import Defaults, inject
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
                             "--log-level", "error"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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


def write_markdown(results: dict[str, Any], path: Path) -> None:
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
    lines = [
        "# Benchmarks", "",
        f"Measured {results['date']} on {results['machine']} by `make bench` (medians of {results['runs']} runs; "
        "the peer is bare Litestream 0.5.17 with its own web-identity chain, in the same run).", "",
        "| measure | litestream-supervisor | peer | ratio |", "|---|---|---|---|",
    ]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    lines += ["", "Notes:", "", f"- restore: {r['restore']['note']}.", f"- refresh impact: {r['refresh']['note']}.",
              "- commit -> in the replica: for each commit of a 20-per-second writer, the time until the first "
              "level-0 LTX upload after it (S3 LastModified); Litestream syncs every second.",
              "- lease: B's restore waits while A holds the lease; it polls every 2 s, so the hand-off after A's "
              "release is at most about 2 s (the TTL is only waited out when a holder crashed). Its cost on "
              "restore is the conditional-write probe (three small PUTs) and one GET + PUT of the lease; on "
              "shutdown one PUT (the release), within noise."
              + (f" Lease rows measured {r['lease']['date']} (`python -m bench --only lease`)."
                 if r["lease"].get("date") and r["lease"]["date"] != results["date"] else ""),
              "- admission: " + (r["admission"]["note"] + "." if "admission" in r else "not measured."),
              "- scale: light load (one commit per second per database) for the window; "
              "RSS and CPU of the supervisor process only (Litestream is one child for all databases).",
              "- raw figures: `bench/results.json`.", ""]
    path.write_text("\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--restore-mb", type=int, default=200)
    parser.add_argument("--idle-seconds", type=float, default=60)
    parser.add_argument("--load-seconds", type=float, default=40)
    parser.add_argument("--rpo-trials", type=int, default=10)
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--only", choices=["lease", "admission"],
                        help="run one benchmark and update it in results.json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="litestream-supervisor-bench-"))
    log(f"bed in {work}")
    bed = Bed.up(work / "bed")
    try:
        results: dict[str, Any] = {
            "date": datetime.date.today().isoformat(), "version": __version__,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
            "runs": args.runs, "benchmarks": {},
        }
        b = results["benchmarks"]
        if args.only:
            results = json.loads((args.out / "results.json").read_text())
            results["benchmarks"][args.only] = (bench_lease(bed, work, args.runs) if args.only == "lease"
                                                else bench_admission(work))
            results["benchmarks"][args.only]["date"] = datetime.date.today().isoformat()
            (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
            write_markdown(results, args.out / "RESULTS.md")
            log(f"updated {args.only} in {args.out / 'results.json'}")
            return 0
        b["restore"] = bench_restore(bed, work, args.runs, args.restore_mb)
        b["startup"] = bench_startup(bed, work, args.runs)
        b["idle"] = bench_idle(bed, work, args.idle_seconds)
        b["refresh"] = bench_refresh(bed, work, args.load_seconds)
        b["rotation"] = bench_rotation(bed, work, max(5, args.runs))
        b["rpo"] = bench_rpo(bed, work, args.rpo_trials)
        b["scale_1"] = bench_idle(bed, work, 20, ("db0.db",), write_interval=1.0)
        b["scale_20"] = bench_idle(bed, work, 20, tuple(f"db{i}.db" for i in range(20)), write_interval=1.0)
        b["lease"] = bench_lease(bed, work, args.runs)
        b["admission"] = bench_admission(work)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        write_markdown(results, args.out / "RESULTS.md")
        log(f"wrote {args.out / 'results.json'} and {args.out / 'RESULTS.md'}")
    finally:
        bed.down()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
