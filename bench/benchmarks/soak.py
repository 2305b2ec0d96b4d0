"""A compressed long day (issue 29): one sidecar with 10 s credentials refreshed all along, a token
rotation every 30 s, a restore drill every 5 minutes, a steady writer and two S3 outages; its RSS,
open descriptors, threads and CPU (and its Litestream's) every few seconds. Nothing may grow after
the warm-up: RSS within 1 MB per 1,000 refreshes, descriptors and threads flat; no Litestream
restart; no row lost.

The warm-up lasts until the first drill has run (and at least 2 minutes): a drill loads SQLite and
the comparison's code once, a step of a few MB that the 2 h soak with hourly drills read as growth.

`python -m bench --only soak --minutes M`; `make bench` runs a short one.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.measure import cpu_seconds, rss_mb, wait_until
from bench.runner import Benchmark, Row, log, new_pod, rows_lost_by_restore
from tests.bed.net import Forwarder
from tests.bed.pod import Writer, connect
from tests.bed.testbed import Bed

SAMPLE_SECONDS = 5.0
# Litestream keeps running only if the lease is confirmed again within 24 s (the default TTL's fence)
# of the last confirmation, which may be a renewal period (10 s) before the outage began: a 15 s
# outage fenced the 2 h soak at 80 min. 10 s stays clear of it.
OUTAGE_SECONDS = 10.0
ROTATION_SECONDS = 30.0
DRILL_SECONDS = 300.0  # a day's hourly drills, compressed like its refreshes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--minutes", type=float, default=3.0, help="length of the soak (make bench: a short one)")


def count(path: str) -> int:
    try:
        return len(os.listdir(path))
    except OSError:
        return 0


def gone_is_zero(measure: Callable[[int], float], pid: int) -> float:
    """A process that ended between two looks (Litestream stopped by a fence) measures 0."""
    try:
        return measure(pid)
    except OSError:
        return 0.0


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs (0 with fewer than two distinct xs)."""
    if len(set(xs)) < 2:
        return 0.0
    mx, my = statistics.mean(xs), statistics.mean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)


def drill_steps(samples: list[dict[str, float]]) -> list[dict[str, float]]:
    """Each successful drill seen in the samples: when, and the supervisor's RSS just before and
    after it (a drill that leaked would step up every time, not once)."""
    steps = []
    for before, after in itertools.pairwise(samples):
        if after["drilled_at"] != before["drilled_at"]:
            steps.append({"t": after["t"], "rss_mb_before": before["rss_mb"], "rss_mb_after": after["rss_mb"]})
    return steps


def bench_soak(bed: Bed, work: Path, minutes: float) -> dict[str, Any]:
    seconds = minutes * 60
    drill_every = min(DRILL_SECONDS, max(30.0, seconds / 6))
    outages = [(seconds / 3, seconds / 3 + OUTAGE_SECONDS), (seconds * 2 / 3, seconds * 2 / 3 + OUTAGE_SECONDS)]
    pod = new_pod(bed, work)
    connect(pod.db()).close()
    fwd = Forwarder(bed.cluster.rgw_port)
    fwd.start()
    pod.endpoint = fwd.url
    pod.write_config()
    sup = pod.start_replicate("--lag-interval", "5", "--duration-seconds", "10",
                              "--verify-interval", f"{drill_every:g}",
                              env=pod.env(AWS_ENDPOINT_URL_STS=bed.endpoint))
    samples: list[dict[str, float]] = []
    try:
        wait_until(lambda: sup.get("/readyz")[0] == 200, 60, "ready")
        pid, child = sup.proc.pid, sup.litestream_pid()
        pod.projector.start(ROTATION_SECONDS)
        writer = Writer(pod.db(), 0.1).start()
        t0 = time.time()
        cut, down = 0, False
        log(f"soak: {minutes:g} min, outages at {[round(a) for a, _ in outages]} s")
        while (now := time.time() - t0) < seconds:
            if cut < len(outages) and now >= outages[cut][0] and not down:
                fwd.cut()
                down = True
            if down and now >= outages[cut][1]:
                fwd.restore()
                down, cut = False, cut + 1
            if not os.path.exists(f"/proc/{child}"):
                child = sup.litestream_pid()  # restarted (a fence): follow the new one, count it below
            samples.append({
                "t": round(now, 1), "rss_mb": rss_mb(pid), "fds": count(f"/proc/{pid}/fd"),
                "threads": count(f"/proc/{pid}/task"), "cpu_seconds": round(cpu_seconds(pid), 2),
                "litestream_rss_mb": gone_is_zero(rss_mb, child), "litestream_fds": count(f"/proc/{child}/fd"),
                "litestream_cpu_seconds": round(gone_is_zero(cpu_seconds, child), 2),
                "refreshes": sup.metric("litestream_supervisor_credential_refreshes_total"),
                "rotations": sup.metric("litestream_supervisor_token_rotations_total"),
                "drilled_at": sup.metric("litestream_supervisor_verify_last_success_timestamp_seconds"),
            })
            time.sleep(SAMPLE_SECONDS)
        committed = writer.stop()
        pod.projector.stop()
        restarts = sup.metric("litestream_supervisor_litestream_restarts_total")
        code = sup.terminate()
        starts = sup.count("litestream_started")
    finally:
        fwd.stop()
    pod.endpoint = bed.endpoint
    pod.write_config()
    lost = rows_lost_by_restore(pod, committed)
    pod.close()
    drills = drill_steps(samples)
    first_drill = drills[0]["t"] if drills else seconds
    warm_up = max(min(120.0, seconds / 5), first_drill + SAMPLE_SECONDS)
    after = [s for s in samples if s["t"] >= warm_up] or samples[-2:]
    refreshes = [s["refreshes"] for s in after]
    rss_per_1000 = round(slope(refreshes, [s["rss_mb"] for s in after]) * 1000, 2)
    quarter = max(1, len(after) // 4)

    def drift(key: str) -> float:
        return round(statistics.median(s[key] for s in after[-quarter:])
                     - statistics.median(s[key] for s in after[:quarter]), 2)

    out = {
        "minutes": minutes, "warm_up_seconds": warm_up, "outages": outages, "samples": samples,
        "drill_interval_seconds": drill_every, "drills": drills,
        "refreshes": samples[-1]["refreshes"], "rotations": samples[-1]["rotations"],
        "rss_mb_per_1000_refreshes": rss_per_1000,
        "rss_mb_after_warm_up": [min(s["rss_mb"] for s in after), max(s["rss_mb"] for s in after)],
        "rss_drift_mb": drift("rss_mb"), "fds_after_warm_up": [min(s["fds"] for s in after),
                                                               max(s["fds"] for s in after)],
        "fds_drift": drift("fds"), "threads_after_warm_up": [min(s["threads"] for s in after),
                                                             max(s["threads"] for s in after)],
        "threads_drift": drift("threads"),
        "cpu_seconds_per_minute": round((after[-1]["cpu_seconds"] - after[0]["cpu_seconds"])
                                        / max(1e-9, (after[-1]["t"] - after[0]["t"]) / 60), 3),
        "litestream_cpu_seconds_per_minute": round((after[-1]["litestream_cpu_seconds"]
                                                    - after[0]["litestream_cpu_seconds"])
                                                   / max(1e-9, (after[-1]["t"] - after[0]["t"]) / 60), 3),
        "litestream_rss_drift_mb": drift("litestream_rss_mb"),
        "litestream_restarts": restarts, "litestream_starts": starts, "exit_code": code,
        "rows_committed": len(committed), "rows_lost": lost,
    }
    log(f"soak: {out['refreshes']:.0f} refreshes, RSS {out['rss_mb_per_1000_refreshes']} MB/1000 refreshes "
        f"(drift {out['rss_drift_mb']} MB), fds {out['fds_after_warm_up']}, threads {out['threads_after_warm_up']}, "
        f"restarts {restarts}, lost {lost}, {len(drills)} drills")
    return out


BENCHMARKS = {"soak": Benchmark(lambda bed, work, a: bench_soak(bed, work, a.minutes))}


def rows(r: dict[str, Any]) -> list[Row]:
    if "soak" not in r:
        return []
    s = r["soak"]
    return [
        (f"soak ({s['minutes']:g} min: 10 s credentials, a token rotation every 30 s, a restore drill every "
         f"{s.get('drill_interval_seconds', 3600):g} s, a 10/s writer, two "
         f"{s['outages'][0][1] - s['outages'][0][0]:g} s S3 outages): "
         "refreshes; RSS per 1,000 refreshes (drift after warm-up)",
         f"{s['refreshes']:.0f}; {s['rss_mb_per_1000_refreshes']} MB ({s['rss_drift_mb']:+} MB)",
         f"Litestream's RSS drift {s['litestream_rss_drift_mb']:+} MB", ""),
        ("soak: open descriptors / threads after warm-up (min-max; drift)",
         f"{s['fds_after_warm_up'][0]}-{s['fds_after_warm_up'][1]} ({s['fds_drift']:+}) / "
         f"{s['threads_after_warm_up'][0]}-{s['threads_after_warm_up'][1]} ({s['threads_drift']:+})", "", ""),
        ("soak: CPU per minute under load; Litestream restarts; rows lost; exit code",
         f"{s['cpu_seconds_per_minute']} s; {s['litestream_restarts']:.0f}; {s['rows_lost']} of "
         f"{s['rows_committed']}; {s['exit_code']}", f"{s['litestream_cpu_seconds_per_minute']} s (Litestream)", ""),
    ]


def notes(r: dict[str, Any], results: dict[str, Any]) -> list[str]:
    if "soak" not in r:
        return []
    s = r["soak"]
    return [f"- soak: `python -m bench --only soak --minutes {s['minutes']:g}`; samples every {SAMPLE_SECONDS:g} s "
            f"(/proc of the supervisor and of its Litestream); a restore drill every "
            f"{s.get('drill_interval_seconds', 3600):g} s ({len(s.get('drills', []))} ran); the first "
            f"{s['warm_up_seconds']:g} s are warm-up (until the first drill has run); "
            "RSS per 1,000 refreshes is the least-squares slope of RSS over the refresh count after it, drift the "
            "median of the last quarter minus the first's; S3 behind a forwarder cut for the outages, STS direct; "
            "the default lease TTL (30 s) and --lag-interval (5 s)."]
