"""Catch-up after an S3 outage (issue 26): the time from S3's return until every commit made
before it is in the replica, measured from the replica's side (the newest level-0 file's LTX
header: the WAL position it brings the replica to), the supervisor against bare Litestream with
its own web-identity chain; the same outage, the same writer, runs alternated."""

from __future__ import annotations

import argparse
import signal
import time
from pathlib import Path
from typing import Any

from bench.measure import ReplicaWatch, wait_until
from bench.runner import Benchmark, Row, bare_replicate, log, median, new_pod, replica_of, rows_lost_by_restore
from supervisor.litestream import walfile
from tests.bed.net import Forwarder
from tests.bed.pod import Writer, connect
from tests.bed.replicas import replica_row_ids, role_s3
from tests.bed.testbed import Bed

GOAL_SECONDS = 3.0
GIVE_UP_SECONDS = 120.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--catchup-runs", type=int, default=5, help="runs each for the supervisor and bare")
    parser.add_argument("--outage-seconds", type=float, default=10.0)


def one_run(bed: Bed, work: Path, who: str, outage_seconds: float) -> dict[str, Any]:
    pod = new_pod(bed, work)
    connect(pod.db()).close()
    fwd = Forwarder(bed.cluster.rgw_port)  # S3 only: STS stays up (this is an S3 outage)
    fwd.start()
    pod.endpoint = fwd.url
    pod.write_config()
    watch = ReplicaWatch(role_s3(pod), replica_of(bed, pod))
    try:
        if who == "supervisor":
            # the default --lag-interval (5 s), as users run it: while S3 fails it looks every 0.5-1 s
            sup = pod.start_replicate("--lag-interval", "5", env=pod.env(AWS_ENDPOINT_URL_STS=bed.endpoint))
            wait_until(lambda: sup.get("/readyz")[0] == 200, 60, "ready")
        else:
            proc = bare_replicate(pod)
            wait_until(lambda: watch.refresh() is not None, 60, "bare Litestream's first upload")
        writer = Writer(pod.db(), 0.05).start()
        time.sleep(2)
        fwd.cut()
        time.sleep(outage_seconds)
        position = walfile.read_position(pod.db())
        before = list(writer.committed)
        fwd.restore()
        back = time.time()
        assert position is not None
        while not watch.holds(position) and time.time() - back < GIVE_UP_SECONDS:
            time.sleep(0.05)
        caught_up = time.time() - back
        held = watch.holds(position)
        # what the header said, checked by content: the rows committed before the return restore
        missing_at_catch_up = len(set(before) - replica_row_ids(pod, pod.db())) if held else len(before)
        committed = writer.stop()
        if who == "supervisor":
            code = sup.terminate()
            starts = sup.count("litestream_started")
            how = [e.get("how") for e in sup.events() if e.get("event") == "caught_up"]
        else:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=60)
            starts, how = 1, []
    finally:
        fwd.stop()
    pod.endpoint = bed.endpoint
    pod.write_config()
    lost = rows_lost_by_restore(pod, committed)
    pod.close()
    out = {"seconds": round(caught_up, 2) if held else float("nan"), "rows_before_return": len(before),
           "missing_when_caught_up": missing_at_catch_up, "rows_committed": len(committed), "rows_lost": lost,
           "exit_code": code, "litestream_starts": starts, "how": how}
    log(f"catch-up {who}: {out}")
    return out


def bench_catchup(bed: Bed, work: Path, runs: int, outage_seconds: float) -> dict[str, Any]:
    results: dict[str, list[dict[str, Any]]] = {"supervisor": [], "bare": []}
    for i in range(runs):
        order = ("supervisor", "bare") if i % 2 == 0 else ("bare", "supervisor")  # alternated, as restore's
        for who in order:
            results[who].append(one_run(bed, work, who, outage_seconds))
    out: dict[str, Any] = {"outage_seconds": outage_seconds, "runs": runs, "goal_seconds": GOAL_SECONDS}
    for who, rows in results.items():
        seconds = [r["seconds"] for r in rows]
        out[who] = {"runs_seconds": seconds, "median_seconds": median(seconds), "max_seconds": max(seconds),
                    "min_seconds": min(seconds), "rows_lost": sum(r["rows_lost"] for r in rows),
                    "missing_when_caught_up": sum(r["missing_when_caught_up"] for r in rows),
                    "exit_codes": [r["exit_code"] for r in rows],
                    "litestream_starts": [r["litestream_starts"] for r in rows],
                    "how": [r["how"] for r in rows], "runs": rows}
    out["supervisor"]["within_goal"] = sum(1 for s in out["supervisor"]["runs_seconds"] if s <= GOAL_SECONDS)
    out["note"] = (f"a {outage_seconds:g} s S3 outage (a TCP forwarder in front of RGW cut; STS left up) under a "
                   "20/s writer. Caught up = the replica's newest level-0 LTX file (listed and its header read "
                   "every 50 ms from outside, alike for both) covers the WAL position the database had when S3 "
                   "returned; at that moment a restore of the replica (bare Litestream) is checked to hold every row "
                   "committed before the return. Runs alternate which of the two goes first")
    return out


BENCHMARKS = {"catchup": Benchmark(lambda bed, work, a: bench_catchup(bed, work, a.catchup_runs, a.outage_seconds))}


def rows(r: dict[str, Any]) -> list[Row]:
    if "catchup" not in r:
        return []
    c = r["catchup"]
    s, b = c["supervisor"], c["bare"]
    return [
        (f"catch-up after a {c['outage_seconds']:g} s S3 outage: median (min-max) of {c['runs']} runs, seen from "
         "the replica", f"{s['median_seconds']} s ({s['min_seconds']}-{s['max_seconds']} s); "
         f"{s['within_goal']} of {c['runs']} within {c['goal_seconds']:g} s",
         f"{b['median_seconds']} s ({b['min_seconds']}-{b['max_seconds']} s)",
         round(s["median_seconds"] / b["median_seconds"], 3) if b["median_seconds"] else ""),
        ("catch-up: rows lost / Litestream restarts / exit codes",
         f"{s['rows_lost']} / {sum(n - 1 for n in s['litestream_starts'])} / {sorted(set(s['exit_codes']))}",
         f"{b['rows_lost']} / - / {sorted(set(b['exit_codes']))}", ""),
    ]


def notes(r: dict[str, Any], results: dict[str, Any]) -> list[str]:
    if "catchup" not in r:
        return []
    return [f"- catch-up: {r['catchup']['note']}."]
