"""What one writer per replica costs: restore and shutdown with the lease on vs off, and the
hand-off from a stopping pod A to a waiting pod B."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from bench.measure import wait_until
from bench.runner import Benchmark, Row, event_time, log, median, new_pod
from tests.bed.pod import Pod, Writer, row_ids
from tests.bed.replicas import make_db, push_with_litestream
from tests.bed.testbed import Bed


def bench_lease(bed: Bed, work: Path, runs: int) -> dict[str, Any]:
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



BENCHMARKS = {"lease": Benchmark(lambda bed, work, a: bench_lease(bed, work, a.runs))}


def rows(r: dict[str, Any]) -> list[Row]:
    if "lease" not in r:
        return []
    lease = r["lease"]
    return [
        ("lease: restore of a 2000-row db, lease on vs off", f"{lease['on']['restore_seconds']} s",
         f"{lease['off']['restore_seconds']} s (off)", f"{lease['restore_cost_seconds']:+} s"),
        ("lease: SIGTERM -> exit (final upload, verify, release), on vs off",
         f"{lease['on']['shutdown_seconds']} s", f"{lease['off']['shutdown_seconds']} s (off)",
         f"{lease['shutdown_cost_seconds']:+} s"),
        ("lease hand-off: A released -> B acquired", f"{lease['handoff_release_to_acquired_seconds']} s", "", ""),
        ("lease hand-off: A SIGTERM -> B restored", f"{lease['handoff_sigterm_to_restored_seconds']} s", "", ""),
    ]


def notes(r: dict[str, Any], results: dict[str, Any]) -> list[str]:
    return ["- lease: B's restore waits while A holds the lease; it polls every 2 s, so the hand-off after A's "
            "release is at most about 2 s (the TTL is only waited out when a holder crashed). Its cost on "
            "restore is one GET and one PUT of the lease, with the conditional-write probe (two PUTs at once) "
            "beside them; on shutdown one PUT (the release), within noise."
            + (f" Lease rows measured {r['lease']['date']} (`python -m bench --only lease`)."
               if r["lease"].get("date") and r["lease"]["date"] != results["date"] else "")]
