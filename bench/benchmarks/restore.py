"""Restore wall time per database size, the supervisor (lease, integrity check) against bare
Litestream with its own web-identity chain and bare Litestream given keys; the supervisor's fixed
overhead broken down from its own log."""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.runner import Benchmark, Row, log, median, new_pod, static_env, timestamp
from tests.bed.replicas import bare_env, forget_local, make_db, push_with_litestream
from tests.bed.testbed import Bed, litestream_binary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--restore-mb", type=int, nargs="+", default=[25, 50, 100, 200],
                        help="database sizes for the restore benchmark; the largest gives the headline ratio")
    parser.add_argument("--restore-runs", type=int, default=15,
                        help="runs per size (the ratio is a difference of a few percent, and one run in ten on a "
                             "2-core machine is 0.3 s off: more runs than the rest)")


def restore_phases(output: str, started: float) -> dict[str, float]:
    """Where one restore's time went, from its own log (wall-clock timestamps, exec at `started`)."""
    events = {}
    for line in output.splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict) and "event" in event:
            events.setdefault(event["event"], event)
    at = {name: timestamp(events[name]) - started for name in ("credentials_obtained", "lease_acquired")}
    return {"exec_to_credentials": at["credentials_obtained"],
            "sts_exchange": float(events["credentials_obtained"]["sts_seconds"]),
            "credentials_to_lease": at["lease_acquired"] - at["credentials_obtained"],
            "litestream": float(events["restored"]["litestream_seconds"]),
            "integrity_check": float(events["restored"]["check_seconds"])}


def bench_restore(bed: Bed, work: Path, runs: int, megabytes: int) -> dict[str, Any]:
    pod = new_pod(bed, work)
    rows = megabytes * 1024 * 1024 // 4200
    log(f"restore: building a {megabytes} MB database ({rows} rows) and pushing it")
    make_db(pod.db(), rows, payload_bytes=2048)
    size = pod.db().stat().st_size
    push_with_litestream(pod, pod.db())
    keys = static_env(pod)
    ours, bare, bare_keys = [], [], []
    phases: dict[str, list[float]] = {}
    out = pod.root / "bare.db"

    def bare_run(env: dict[str, str]) -> float:
        forget_local(pod.db())
        out.unlink(missing_ok=True)
        t0 = time.monotonic()
        subprocess.run([litestream_binary(), "restore", "-config", str(pod.config), "-o", str(out), str(pod.db())],
                       env=env, check=True, capture_output=True, timeout=600)
        return time.monotonic() - t0

    def ours_run() -> None:
        forget_local(pod.db())
        started = time.time()
        run = pod.run("restore")
        assert run.returncode == 0, run.output[-2000:]
        ours.append(run.seconds)
        for name, value in restore_phases(run.output, started).items():
            phases.setdefault(name, []).append(value)

    for i in range(runs):
        # The order alternates: whichever runs right after another restore must not always be the same one.
        if i % 2:
            bare.append(bare_run(bare_env(pod)))
            bare_keys.append(bare_run(keys))
            ours_run()
        else:
            ours_run()
            bare.append(bare_run(bare_env(pod)))
            bare_keys.append(bare_run(keys))
        log(f"  run {i + 1}: supervisor {ours[-1]:.2f}s, bare litestream {bare[-1]:.2f}s "
            f"({bare_keys[-1]:.2f}s given keys)")
    pod.close()
    breakdown = {f"{name}_seconds": median(values) for name, values in phases.items()}
    return {"db_bytes": size, "supervisor_seconds": median(ours), "bare_seconds": median(bare),
            "ratio": round(median(ours) / median(bare), 3), "runs": runs,
            "supervisor_runs_seconds": [round(x, 3) for x in ours], "bare_runs_seconds": [round(x, 3) for x in bare],
            "bare_given_keys_seconds": median(bare_keys),
            "bare_given_keys_runs_seconds": [round(x, 3) for x in bare_keys],
            "supervisor_phases": breakdown,
            "supervisor_phases_runs_seconds": {k: [round(x, 3) for x in v] for k, v in phases.items()},
            "note": "both exchange the token at STS; the supervisor also takes the lease, lists the prefix and "
                    "runs PRAGMA integrity_check before the atomic rename. Phases come from the supervisor's "
                    "own log (exec -> credentials_obtained, with its sts_seconds -> lease_acquired; the "
                    "`restored` event's litestream_seconds and check_seconds); bare Litestream also runs given "
                    "the same role's credentials as keys, without its own STS exchange"}


def bench_restore_sizes(bed: Bed, work: Path, runs: int, sizes_mb: list[int]) -> list[dict[str, Any]]:
    out = []
    for mb in sizes_mb:
        out.append(bench_restore(bed, work, runs, mb))
        out[-1]["megabytes"] = mb
        out[-1]["overhead_seconds"] = round(out[-1]["supervisor_seconds"] - out[-1]["bare_seconds"], 3)
    return out


def _store(benchmarks: dict[str, Any], _name: str, value: list[dict[str, Any]]) -> dict[str, Any]:
    """Every size under restore_sizes; the largest is the headline `restore`."""
    benchmarks["restore_sizes"] = value
    benchmarks["restore"] = max(value, key=lambda r: r["db_bytes"])
    return benchmarks["restore"]  # type: ignore[no-any-return]


BENCHMARKS = {
    "restore": Benchmark(lambda bed, work, a: bench_restore_sizes(bed, work, a.restore_runs, sorted(a.restore_mb)),
                         store=_store),
}


def rows(r: dict[str, Any]) -> list[Row]:
    out: list[Row] = [
        (f"restore of a {r['restore']['db_bytes'] // 1_000_000} MB db (wall)",
         f"{r['restore']['supervisor_seconds']} s", f"{r['restore']['bare_seconds']} s", r["restore"]["ratio"])]
    if "overhead_seconds" in r["restore"]:
        out.append(("restore: fixed overhead (supervisor - bare, same db)", f"{r['restore']['overhead_seconds']} s",
                    "", ""))
    if "sts_exchange_seconds" in r["restore"].get("supervisor_phases", {}):
        ph = r["restore"]["supervisor_phases"]
        out += [
            ("restore: exec -> credentials = until the STS request leaves + until its answer is taken "
             "(the imports, the round trip beside them; bare makes the same exchange)",
             f"{ph['exec_to_credentials_seconds']} s = "
             f"{round(ph['exec_to_credentials_seconds'] - ph['sts_exchange_seconds'], 3)} + "
             f"{ph['sts_exchange_seconds']} s", f"bare: {r['restore']['bare_seconds']} s with its exchange, "
             f"{r['restore']['bare_given_keys_seconds']} s given keys", ""),
            ("restore: credentials -> lease held; integrity check", f"{ph['credentials_to_lease_seconds']} s; "
             f"{ph['integrity_check_seconds']} s", "none; none", ""),
            ("restore: Litestream's own run under the supervisor / bare given keys", f"{ph['litestream_seconds']} s",
             f"{r['restore']['bare_given_keys_seconds']} s",
             round(ph["litestream_seconds"] / r["restore"]["bare_given_keys_seconds"], 3)),
        ]
    return out


def restore_overhead_note(restore: dict[str, Any]) -> list[str]:
    """The restore's fixed overhead, phase by phase, in words (from the same run's figures)."""
    ph = restore.get("supervisor_phases", {})
    if "sts_exchange_seconds" not in ph or "overhead_seconds" not in restore:
        return []
    startup = round(ph["exec_to_credentials_seconds"] - ph["sts_exchange_seconds"], 3)
    return [f"- restore overhead ({restore['overhead_seconds']} s on {restore['db_bytes'] // 1_000_000} MB): the "
            f"supervisor has credentials {ph['exec_to_credentials_seconds']} s after exec. Its STS request leaves "
            f"after {startup} s (Python starting, flags, config and token read, sent as plain HTTP before botocore "
            f"is imported) and its answer is taken {ph['sts_exchange_seconds']} s later, once botocore, asyncio, "
            "structlog and the restore machinery have loaded: the round trip, which bare Litestream makes too "
            "(in Go, ~0.02 s after its exec), runs beside those imports, the part bare Litestream does not "
            f"have. Then the lease ({ph['credentials_to_lease_seconds']} s, with S3's model loaded for its "
            "client) and, after Litestream, the "
            f"integrity check ({ph['integrity_check_seconds']} s): what failing closed costs. Litestream's own run "
            f"under the supervisor: {ph['litestream_seconds']} s (bare, given keys: "
            f"{restore['bare_given_keys_seconds']} s). None of it grows with the database but the check "
            f"(~{ph['integrity_check_seconds'] / restore['db_bytes'] * 1e9:.2f} s per GB), so the ratio falls "
            "as the database grows"]


def notes(r: dict[str, Any], results: dict[str, Any]) -> list[str]:
    return [f"- restore: {r['restore']['note']}.", *restore_overhead_note(r["restore"])]
