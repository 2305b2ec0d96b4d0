"""Idle (and lightly loaded) sidecar: RSS and CPU of the supervisor and of its Litestream child."""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path
from typing import Any

from bench.measure import cpu_seconds, rss_mb, wait_until
from bench.runner import Benchmark, Row, log, median, new_pod
from tests.bed.pod import connect
from tests.bed.testbed import Bed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--idle-seconds", type=float, default=60)


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



BENCHMARKS = {"idle": Benchmark(lambda bed, work, a: bench_idle(bed, work, a.idle_seconds))}


def rows(r: dict[str, Any]) -> list[Row]:
    return [(f"idle RSS ({r['idle']['seconds']:g} s)", f"{r['idle']['supervisor_rss_mb']} MB",
             f"{r['idle']['litestream_rss_mb']} MB (its child)", r["idle"]["rss_ratio"]),
            (f"idle CPU ({r['idle']['seconds']:g} s)", f"{r['idle']['supervisor_cpu_seconds']} s",
             f"{r['idle']['litestream_cpu_seconds']} s (its child)", r["idle"]["cpu_ratio"])]
