"""Start-up: exec to the Litestream child started, and to /readyz 200."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.measure import wait_until
from bench.runner import Benchmark, Row, log, median, new_pod, timestamp
from tests.bed.testbed import Bed


def bench_startup(bed: Bed, work: Path, runs: int) -> dict[str, Any]:
    to_child, to_ready = [], []
    for _ in range(runs):
        pod = new_pod(bed, work)
        t0 = time.time()
        sup = pod.start_replicate()
        wait_until(lambda s=sup: s.get("/readyz")[0] == 200, 60, "ready")
        to_ready.append(time.time() - t0)
        started = next(e for e in sup.events() if e.get("event") == "litestream_started")
        ts = timestamp(started)
        to_child.append(ts - t0)
        sup.terminate()
        pod.close()
    log(f"startup: child {median(to_child):.2f}s, ready {median(to_ready):.2f}s")
    return {"exec_to_litestream_started_seconds": median(to_child),
            "exec_to_readyz_200_seconds": median(to_ready), "runs": runs,
            "exec_to_readyz_200_runs_seconds": [round(x, 3) for x in to_ready]}



BENCHMARKS = {"startup": Benchmark(lambda bed, work, a: bench_startup(bed, work, a.runs))}


def rows(r: dict[str, Any]) -> list[Row]:
    return [("exec -> Litestream child started", f"{r['startup']['exec_to_litestream_started_seconds']} s", "", ""),
            ("exec -> /readyz 200", f"{r['startup']['exec_to_readyz_200_seconds']} s", "", "")]
