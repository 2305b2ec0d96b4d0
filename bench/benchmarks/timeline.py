"""Both side by side in one window, each behind its own S3 forwarder: refreshes, a token rotation
and an S3 outage; replication lag and credential validity every 0.5 s."""

from __future__ import annotations

import argparse
import signal
import time
from pathlib import Path
from typing import Any

from bench.measure import LagSampler, percentile, wait_until
from bench.runner import Benchmark, Row, bare_replicate, log, new_pod, replica_of
from tests.bed.pod import Writer, connect
from tests.bed.testbed import Bed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeline-seconds", type=float, default=60)


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


BENCHMARKS = {"timeline": Benchmark(lambda bed, work, a: bench_timeline(bed, work, a.timeline_seconds))}


def caught_up_after_outage(series: dict[str, list[float]], outage_end: float, normal_seconds: float = 2.0) -> float:
    """Seconds from S3's return until the lag is back under `normal_seconds` (from the raw samples)."""
    for t, lag in zip(series["t"], series["lag_seconds"], strict=True):
        if t >= outage_end and lag < normal_seconds:
            return round(max(0.0, t - outage_end), 1)
    return float("nan")


def rows(r: dict[str, Any]) -> list[Row]:
    if "timeline" not in r:
        return []
    t = r["timeline"]
    return [
        (f"timeline ({t['seconds']:g} s: refreshes, a rotation, an S3 outage): lag max / p50",
         f"{t['supervisor_lag_max_seconds']} s / {t['supervisor_lag_p50_seconds']} s",
         f"{t['bare_lag_max_seconds']} s / {t['bare_lag_p50_seconds']} s", ""),
        (f"timeline: caught up after S3 came back ({t['outage'][1] - t['outage'][0]:g} s outage)",
         f"{caught_up_after_outage(t['supervisor'], t['outage'][1])} s",
         f"{caught_up_after_outage(t['bare'], t['outage'][1])} s", ""),
    ]


def notes(r: dict[str, Any], results: dict[str, Any]) -> list[str]:
    if "timeline" not in r:
        return ["- timeline: not measured."]
    return ["- timeline: " + r["timeline"]["credentials_note"] + "; lag sampled every 0.5 s from outside (local "
            "LTX files vs the replica listing), the same way for both. After the outage bare Litestream uploads "
            "again at its next sync attempt, and its attempts back off (the sync interval, doubled after each "
            "failure, up to ~50 s); the supervisor sees S3 back within a second and has Litestream upload at "
            "once through its control socket (a reopen of the database after a few seconds of outage), after a "
            "random part of 15% of the outage (the catch-up benchmark measures it from the replica's side, over "
            "several runs)."]
