"""One sidecar for 1 and for 20 databases under light load (a commit per second each)."""

from __future__ import annotations

from typing import Any

from bench.benchmarks.idle import bench_idle
from bench.runner import Benchmark, Row

BENCHMARKS = {
    "scale_1": Benchmark(lambda bed, work, a: bench_idle(bed, work, 20, ("db0.db",), write_interval=1.0)),
    "scale_20": Benchmark(lambda bed, work, a: bench_idle(bed, work, 20, tuple(f"db{i}.db" for i in range(20)),
                                                          write_interval=1.0)),
}


def rows(r: dict[str, Any]) -> list[Row]:
    return [("scale: supervisor RSS, 1 vs 20 dbs", f"{r['scale_1']['supervisor_rss_mb']} MB",
             f"{r['scale_20']['supervisor_rss_mb']} MB (20 dbs)",
             round(r["scale_20"]["supervisor_rss_mb"] / r["scale_1"]["supervisor_rss_mb"], 3)),
            ("scale: supervisor CPU, 1 vs 20 dbs", f"{r['scale_1']['supervisor_cpu_seconds']} s",
             f"{r['scale_20']['supervisor_cpu_seconds']} s (20 dbs)", "")]


def notes(r: dict[str, Any], results: dict[str, Any]) -> list[str]:
    return ["- scale: light load (one commit per second per database) for the window; "
            "RSS and CPU of the supervisor process only (Litestream is one child for all databases)."]
