"""SIGTERM to exit 0 under a steady writer (issue 26): the supervisor's whole shutdown (final upload
through the socket, the position confirmed, the final content check, the lease released) against
bare Litestream's own (its final upload), alternated."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

from bench.measure import wait_until
from bench.runner import Benchmark, Row, bare_replicate, log, median, new_pod, rows_lost_by_restore
from tests.bed.pod import Writer, connect
from tests.bed.testbed import Bed


def one_run(bed: Bed, work: Path, who: str) -> dict[str, Any]:
    pod = new_pod(bed, work)
    connect(pod.db()).close()
    if who == "supervisor":
        sup = pod.start_replicate()
        wait_until(lambda: sup.get("/readyz")[0] == 200, 60, "ready")
    else:
        proc = bare_replicate(pod)
        time.sleep(1.5)
    writer = Writer(pod.db(), 0.02).start()
    time.sleep(2)
    committed = writer.stop()
    t0 = time.monotonic()
    if who == "supervisor":
        code = sup.terminate()
        seconds = time.monotonic() - t0
        check = next((float(e["seconds"]) for e in sup.events() if e.get("event") == "final_content_verified"), None)
    else:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        seconds, check = time.monotonic() - t0, None
    lost = rows_lost_by_restore(pod, committed)
    pod.close()
    return {"seconds": round(seconds, 3), "exit_code": code, "final_check_seconds": check, "rows_lost": lost,
            "rows_committed": len(committed)}


def bench_shutdown(bed: Bed, work: Path, runs: int) -> dict[str, Any]:
    results: dict[str, list[dict[str, Any]]] = {"supervisor": [], "bare": []}
    for i in range(runs):
        for who in (("supervisor", "bare") if i % 2 == 0 else ("bare", "supervisor")):
            results[who].append(one_run(bed, work, who))
    out: dict[str, Any] = {"runs": runs}
    for who, rows in results.items():
        out[who] = {"median_seconds": median([r["seconds"] for r in rows]),
                    "max_seconds": max(r["seconds"] for r in rows),
                    "runs_seconds": [r["seconds"] for r in rows], "exit_codes": [r["exit_code"] for r in rows],
                    "rows_lost": sum(r["rows_lost"] for r in rows),
                    "rows_committed": sum(r["rows_committed"] for r in rows)}
    checks = [r["final_check_seconds"] for r in results["supervisor"] if r["final_check_seconds"] is not None]
    out["supervisor"]["final_check_median_seconds"] = median(checks)
    out["note"] = ("SIGTERM right after 2 s of a 50/s writer, a small database; the supervisor: read lock, the "
                   "WAL staged through the socket (a sync without wait: supervisor/litestream/control.py), Litestream "
                   "stopped, the replica's position confirmed, the final state restored and compared page by "
                   "page, the lease released; bare Litestream: its own final upload")
    log(f"shutdown: {out['supervisor']['median_seconds']} s vs bare {out['bare']['median_seconds']} s")
    return out


BENCHMARKS = {"shutdown": Benchmark(lambda bed, work, a: bench_shutdown(bed, work, max(5, a.runs)))}


def rows(r: dict[str, Any]) -> list[Row]:
    if "shutdown" not in r:
        return []
    s, b = r["shutdown"]["supervisor"], r["shutdown"]["bare"]
    return [(f"SIGTERM -> exit, under a writer (median, max of {r['shutdown']['runs']}); exit codes",
             f"{s['median_seconds']} s, {s['max_seconds']} s; {sorted(set(s['exit_codes']))} (final content check "
             f"{s['final_check_median_seconds']} s of it)",
             f"{b['median_seconds']} s, {b['max_seconds']} s; {sorted(set(b['exit_codes']))}",
             round(s["median_seconds"] / b["median_seconds"], 3))]


def notes(r: dict[str, Any], results: dict[str, Any]) -> list[str]:
    return [f"- shutdown: {r['shutdown']['note']}."] if "shutdown" in r else []
