"""Commit-to-replica latency under a 20/s writer while the supervisor's credentials refresh every
~5 s, against bare Litestream (its own chain, no refresh within the window)."""

from __future__ import annotations

import argparse
import signal
import time
from pathlib import Path
from typing import Any

from bench.measure import LagSampler, commit_latencies, percentile, wait_until
from bench.runner import Benchmark, Row, bare_replicate, log, new_pod, replica_of, rows_lost_by_restore
from tests.bed.pod import Writer, connect
from tests.bed.testbed import Bed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--load-seconds", type=float, default=40)


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
        lost = rows_lost_by_restore(pod, committed)
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



BENCHMARKS = {"refresh": Benchmark(lambda bed, work, a: bench_refresh(bed, work, a.load_seconds))}


def rows(r: dict[str, Any]) -> list[Row]:
    return [
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
    ]


def notes(r: dict[str, Any], results: dict[str, Any]) -> list[str]:
    return [f"- refresh impact: {r['refresh']['note']}.",
            "- commit -> in the replica: for each commit of a 20-per-second writer, the time until the first "
            "level-0 LTX upload after it (S3 LastModified); Litestream syncs every second."]
