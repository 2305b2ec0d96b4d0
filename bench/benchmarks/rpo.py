"""RPO on SIGTERM: rows a steady writer committed that a restore afterwards does not hold."""

from __future__ import annotations

import argparse
import signal
import time
from pathlib import Path
from typing import Any

from bench.measure import wait_until
from bench.runner import Benchmark, Row, bare_replicate, log, new_pod
from tests.bed.pod import Writer, connect, row_ids
from tests.bed.replicas import forget_local
from tests.bed.testbed import Bed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rpo-trials", type=int, default=10)


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



BENCHMARKS = {"rpo": Benchmark(lambda bed, work, a: bench_rpo(bed, work, a.rpo_trials))}


def rows(r: dict[str, Any]) -> list[Row]:
    return [("RPO: rows lost on SIGTERM", f"{r['rpo']['supervisor']['rows_lost']} of "
             f"{r['rpo']['supervisor']['rows_committed']} ({r['rpo']['supervisor']['trials']} trials)",
             f"{r['rpo']['bare']['rows_lost']} of {r['rpo']['bare']['rows_committed']}", "")]
