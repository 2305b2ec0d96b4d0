"""Token rotation (the kubelet's symlink swap) to new credentials in use."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.measure import wait_until
from bench.runner import Benchmark, Row, log, median, new_pod, timestamp
from tests.bed.testbed import Bed


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
        ts = timestamp(event)
        latencies.append(ts - t0)
        time.sleep(1)
    sup.terminate()
    pod.close()
    log(f"rotation -> new credentials: median {median(latencies):.3f}s")
    return {"median_seconds": median(latencies), "max_seconds": round(max(latencies), 3), "rotations": rotations}



BENCHMARKS = {"rotation": Benchmark(lambda bed, work, a: bench_rotation(bed, work, max(5, a.runs)))}


def rows(r: dict[str, Any]) -> list[Row]:
    return [("token rotation -> new credentials (median)", f"{r['rotation']['median_seconds']} s", "", "")]
