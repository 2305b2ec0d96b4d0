"""Many sidecars on one store (issue 29): N real sidecars (the supervisor with its real Litestream
child) on the bed's RGW behind one counting proxy for S3 and one for STS; the request rate at the
store, the probe's latency and errors in steady state; then a 30 s S3 outage and an STS outage
past the credentials' expiry: the rate when the store returns, every sidecar caught up, no row
lost, no Litestream restarted.

The lease: the main group runs with a 120 s TTL, so a 30 s outage stays inside its fence time
(96 s); a small group keeps the default 30 s TTL (fenced after 24 s without a confirmed renewal,
by design: Litestream stopped, started again once the lease is confirmed) and is reported apart.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sqlite3
import statistics
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.measure import percentile, rss_mb, wait_until
from bench.proxy import CountingProxy, Request, per_second
from bench.runner import Benchmark, Row, log, new_pod
from tests.bed.net import free_port
from tests.bed.pod import Pod, Supervisor, connect
from tests.bed.replicas import replica_row_ids
from tests.bed.testbed import Bed

LONG_TTL = "120"
CREDENTIALS_SECONDS = "30"
CAUGHT_UP_LAG_SECONDS = 3.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--herd", type=int, default=50, help="sidecars on one store (the herd benchmark)")
    parser.add_argument("--herd-default-ttl", type=int, default=5,
                        help="of those, how many keep the default 30 s lease TTL (fenced by a 30 s outage)")
    parser.add_argument("--herd-steady-seconds", type=float, default=30)


class Herd:
    def __init__(self, bed: Bed, work: Path, n: int, default_ttl: int, records: list[Request]) -> None:
        self.s3 = CountingProxy(bed.cluster.rgw_port, "s3", records=records).start()
        self.sts = CountingProxy(bed.cluster.rgw_port, "sts", records=records).start()
        self.pods: list[Pod] = []
        self.sups: list[Supervisor] = []
        self.ttl: list[str] = []
        for i in range(n):
            pod = new_pod(bed, work)
            pod.endpoint = self.s3.url
            pod.write_config()
            connect(pod.db()).close()
            self.pods.append(pod)
            self.ttl.append("30" if i < default_ttl else LONG_TTL)
        self.committed: list[list[int]] = [[] for _ in range(n)]
        self.lags: list[tuple[float, list[float]]] = []  # (time, lag of each sidecar)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for pod, ttl in zip(self.pods, self.ttl, strict=True):
            port = free_port()
            sup = pod.start("replicate", "--health-addr", f"127.0.0.1:{port}", "--duration-seconds",
                            CREDENTIALS_SECONDS, "--lease-ttl", ttl, "--verify-interval", "0",
                            env=pod.env(AWS_ENDPOINT_URL_STS=self.sts.url))
            sup.health_port = port
            self.sups.append(sup)
            time.sleep(0.25)  # pods of a node do not start in the same second
        for sup in self.sups:
            wait_until(lambda s=sup: s.get("/readyz")[0] == 200, 180, "every sidecar ready")

    def _write(self, every_seconds: float) -> None:
        """One commit per database every `every_seconds`, round robin, from one thread."""
        cons = [sqlite3.connect(p.db(), timeout=10, isolation_level=None) for p in self.pods]
        gap = every_seconds / len(cons)
        i = 0
        try:
            while not self._stop.is_set():
                for n, con in enumerate(cons):
                    if self._stop.is_set():
                        break
                    i += 1
                    with contextlib.suppress(sqlite3.OperationalError):
                        con.execute("INSERT INTO rows(id, payload) VALUES (?, ?)", (i, os.urandom(64).hex()))
                        self.committed[n].append(i)
                    time.sleep(gap)
        finally:
            for con in cons:
                con.close()

    def _sample(self) -> None:
        """Every 2 s: each sidecar's replication lag (its own metric; no request to the store)."""
        while not self._stop.wait(2.0):
            lags = []
            for sup in self.sups:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{sup.health_port}/metrics", timeout=5) as r:
                        body = r.read().decode()
                    line = next(x for x in body.splitlines()
                                if x.startswith("litestream_supervisor_replication_lag_seconds{"))
                    lags.append(float(line.rsplit(" ", 1)[1]))
                except (OSError, StopIteration, ValueError):
                    lags.append(float("nan"))
            self.lags.append((time.time(), lags))

    def run_background(self, write_every_seconds: float) -> None:
        self._threads = [threading.Thread(target=self._write, args=(write_every_seconds,), daemon=True),
                         threading.Thread(target=self._sample, daemon=True)]
        for t in self._threads:
            t.start()

    def stop_background(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)

    def terminate(self) -> list[int]:
        def stop(sup: Supervisor) -> int:
            try:
                return sup.terminate(timeout=180)
            except Exception:  # reported as a failed exit
                return -1

        with ThreadPoolExecutor(8) as pool:  # a node's pods are not all stopped in one second either
            return list(pool.map(stop, self.sups))

    def close(self) -> None:
        for pod in self.pods:
            pod.close()
        self.s3.stop()
        self.sts.stop()


def caught_up_after(lags: list[tuple[float, list[float]]], back: float, who: list[int]) -> float:
    """Seconds from `back` until every sidecar in `who` shows a lag under CAUGHT_UP_LAG_SECONDS."""
    for t, values in lags:
        if t >= back and all(values[i] < CAUGHT_UP_LAG_SECONDS for i in who):
            return round(t - back, 1)
    return float("nan")


def bench_herd(bed: Bed, work: Path, n: int, default_ttl: int, steady_seconds: float) -> dict[str, Any]:
    records: list[Request] = []
    herd = Herd(bed, work, n, default_ttl, records)
    log(f"herd: starting {n} sidecars")
    t_start = time.time()
    herd.start()
    started_in = time.time() - t_start
    rss = [(rss_mb(s.proc.pid), rss_mb(s.litestream_pid())) for s in herd.sups]
    herd.run_background(write_every_seconds=2.0)
    time.sleep(20)  # settle: the first compactions, the probes' first idle waits
    marks: dict[str, float] = {"steady": time.time()}
    time.sleep(steady_seconds)
    log("herd: S3 outage (30 s)")
    marks["s3_cut"] = time.time()
    herd.s3.cut()
    time.sleep(30)
    herd.s3.restore()
    marks["s3_back"] = time.time()
    time.sleep(75)
    log("herd: STS outage (45 s, past the 30 s credentials' expiry)")
    marks["sts_cut"] = time.time()
    herd.sts.cut()
    time.sleep(45)
    herd.sts.restore()
    marks["sts_back"] = time.time()
    time.sleep(90)
    marks["end"] = time.time()
    herd.stop_background()
    time.sleep(3)
    log("herd: stopping every sidecar")
    codes = herd.terminate()
    long_ttl = [i for i, ttl in enumerate(herd.ttl) if ttl == LONG_TTL]
    short_ttl = [i for i, ttl in enumerate(herd.ttl) if ttl != LONG_TTL]
    starts = [s.count("litestream_started") for s in herd.sups]
    fenced = [s.count("lease_fenced") for s in herd.sups]
    died = [s.count("litestream_died") for s in herd.sups]
    error_lines = sum(1 for s in herd.sups for e in s.events() if e.get("level") == "error")
    # why each Litestream beyond the first was started (the logs go with the pods: kept as counts)
    restart_reasons: dict[str, int] = {}
    for i in long_ttl:
        for e in herd.sups[i].events():
            if e.get("event") in ("litestream_restarting", "litestream_died", "litestream_fenced"):
                key = f"{e.get('event')}: {e.get('reason') or e.get('returncode')}"
                restart_reasons[key] = restart_reasons.get(key, 0) + 1
            elif e.get("event") == "catch_up_restart":
                # the step, and Litestream's own words without the pod's path
                key = f"catch_up_restart: {e.get('step')}: {str(e.get('error')).rsplit(': ', 1)[-1][:60]}"
                restart_reasons[key] = restart_reasons.get(key, 0) + 1
    log("herd: restoring every replica to count rows")
    with ThreadPoolExecutor(2) as pool:
        restored = list(pool.map(lambda p: replica_row_ids(p, p.db()), herd.pods))
    lost = [len(set(c) - r) for c, r in zip(herd.committed, restored, strict=True)]
    herd.close()

    t0 = marks["steady"]
    series = per_second(records, t0, marks["end"])
    by_who = {who: per_second(records, t0, marks["end"], who=who) for who in ("supervisor", "litestream")}
    steady = series[:int(steady_seconds)]
    steady_rate = statistics.mean(steady)
    # Litestream's own compaction (GET the level-0 files, PUT one, LIST the levels): with the same
    # intervals every sidecar's ran in one second (schedule.py now gives each intervals of its own)
    compacting = [r for r in records if r.who == "litestream"
                  and (r.op, r.what) in (("GET", "ltx"), ("PUT", "ltx"), ("LIST", "level"))]
    without = [a - b for a, b in zip(series, per_second(compacting, t0, marks["end"]), strict=True)]
    # Everything but Litestream's level-0 uploads (the outage's backlog: committed data, one file per
    # second with changes), against its own steady mean: what the retries and probes do on a return
    level0 = per_second(records, t0, marks["end"], who="litestream", op="PUT", what="ltx-L0")
    retries = [a - b for a, b in zip(series, level0, strict=True)]
    retries_rate = statistics.mean(retries[:int(steady_seconds)])
    supervisor_rate = statistics.mean(by_who["supervisor"][:int(steady_seconds)])
    steady_top = max(range(len(steady)), key=lambda k: steady[k])

    def kinds_at(at: float) -> dict[str, int]:
        kinds: dict[str, int] = {}
        for r in records:
            if at <= r.at < at + 1:
                key = f"{r.who} {r.op} {r.what}"
                kinds[key] = kinds.get(key, 0) + 1
        return dict(sorted(kinds.items(), key=lambda kv: -kv[1])[:8])

    def peak_after(mark: str, seconds: float = 30) -> dict[str, Any]:
        i = int(marks[mark] - t0)
        window = series[i:i + int(seconds)]
        top = max(range(len(window)), key=lambda k: window[k])
        rest = without[i:i + int(seconds)]
        return {"peak_per_second": window[top], "peak_at_seconds_after": top,
                "ratio_to_steady": round(window[top] / steady_rate, 2),
                "ratio_to_steady_peak": round(window[top] / steady[steady_top], 2),
                "peak_second_by_kind": kinds_at(t0 + i + top),
                "peak_without_compaction_per_second": max(rest),
                "ratio_without_compaction_to_steady": round(max(rest) / steady_rate, 2),
                "level0_uploads_in_30_s": sum(level0[i:i + 30]),
                "peak_without_level0_per_second": max(retries[i:i + int(seconds)]),
                "ratio_without_level0_to_its_steady": round(max(retries[i:i + int(seconds)]) / retries_rate, 2),
                "supervisors_peak_per_second": max(by_who["supervisor"][i:i + int(seconds)]),
                "ratio_supervisors_to_their_steady": round(max(by_who["supervisor"][i:i + int(seconds)])
                                                           / supervisor_rate, 2),
                "first_30_s": window}

    probe = [r.seconds for r in records if t0 <= r.at < marks["s3_cut"] and r.who == "supervisor"
             and r.op == "LIST" and r.status == 200]
    steady_errors = sum(1 for r in records if t0 <= r.at < marks["s3_cut"] and (r.status >= 400 or r.status == 0))
    out = {
        "sidecars": n, "default_ttl_sidecars": len(short_ttl), "started_in_seconds": round(started_in, 1),
        "steady_seconds": steady_seconds, "marks": {k: round(v - t0, 1) for k, v in marks.items()},
        "steady_requests_per_second": round(steady_rate, 1),
        "steady_requests_per_second_per_sidecar": round(steady_rate / n, 3),
        "steady_peak_per_second": steady[steady_top], "steady_peak_second_by_kind": kinds_at(t0 + steady_top),
        "steady_peak_without_compaction_per_second": max(without[:int(steady_seconds)]),
        "steady_without_level0_per_second": round(retries_rate, 1),
        "steady_by_who_per_second": {w: round(statistics.mean(s[:int(steady_seconds)]), 1)
                                     for w, s in by_who.items()},
        "probe_latency_p50_ms": round(percentile(probe, 50) * 1000, 1),
        "probe_latency_p99_ms": round(percentile(probe, 99) * 1000, 1), "probe_listings": len(probe),
        "steady_errors": steady_errors, "supervisor_error_lines": error_lines,
        "after_s3_outage": peak_after("s3_back"), "after_sts_outage": peak_after("sts_back", 60),
        "caught_up_after_s3_seconds": caught_up_after(herd.lags, marks["s3_back"], long_ttl),
        "caught_up_after_sts_seconds": caught_up_after(herd.lags, marks["sts_back"], long_ttl),
        "default_ttl_caught_up_after_s3_seconds": caught_up_after(herd.lags, marks["s3_back"], short_ttl),
        "litestream_restarts_long_ttl": sum(starts[i] - 1 for i in long_ttl),
        "litestream_fences_long_ttl": sum(fenced[i] for i in long_ttl),
        "litestream_restart_reasons_long_ttl": restart_reasons,
        "pauses": sum(s.count("uploads_paused") for s in herd.sups),
        "litestream_restarts_default_ttl": sum(starts[i] - 1 for i in short_ttl),
        "litestream_fences_default_ttl": sum(fenced[i] for i in short_ttl),
        "litestream_died": sum(died), "exit_codes": sorted(set(codes)), "exit_0": codes.count(0),
        "rows_committed": sum(len(c) for c in herd.committed), "rows_lost": sum(lost),
        "supervisor_rss_mb_median": statistics.median(r[0] for r in rss),
        "litestream_rss_mb_median": statistics.median(r[1] for r in rss),
        "series": {"t": list(range(len(series))), "total": series, **by_who},
        "lag_series": {"t": [round(t - t0, 1) for t, _ in herd.lags],
                       "behind": [sum(1 for v in values if not v < CAUGHT_UP_LAG_SECONDS) for _, values in herd.lags]},
    }
    log(f"herd: steady {out['steady_requests_per_second']}/s, after S3 {out['after_s3_outage']['peak_per_second']}/s "
        f"({out['after_s3_outage']['ratio_to_steady']}x), after STS {out['after_sts_outage']['peak_per_second']}/s, "
        f"restarts {out['litestream_restarts_long_ttl']}, lost {out['rows_lost']}, exits {out['exit_codes']}")
    return out


BENCHMARKS = {"herd": Benchmark(lambda bed, work, a: bench_herd(bed, work, a.herd, a.herd_default_ttl,
                                                                a.herd_steady_seconds))}


def rows(r: dict[str, Any]) -> list[Row]:
    if "herd" not in r:
        return []
    h = r["herd"]
    s3, sts = h["after_s3_outage"], h["after_sts_outage"]
    return [
        (f"{h['sidecars']} sidecars on one store, steady (a commit every 2 s each): requests/s at the store; "
         "per sidecar", f"{h['steady_requests_per_second']} /s; {h['steady_requests_per_second_per_sidecar']} /s",
         f"supervisors {h['steady_by_who_per_second']['supervisor']} /s, Litestreams "
         f"{h['steady_by_who_per_second']['litestream']} /s", ""),
        ("herd: probe listing latency p50 / p99; errors in steady state",
         f"{h['probe_latency_p50_ms']} ms / {h['probe_latency_p99_ms']} ms; {h['steady_errors']}", "", ""),
        ("herd, steady: the peak second (x the mean); the peak second without Litestream's compaction requests "
         "(each sidecar compacts at moments of its own: supervisor/litestream/schedule.py)",
         f"{h['steady_peak_per_second']} /s ({round(h['steady_peak_per_second'] / h['steady_requests_per_second'], 2)}"
         f"x the mean); {h['steady_peak_without_compaction_per_second']} /s", "", ""),
        ("herd: 30 s S3 outage: peak requests/s after the return (x steady mean; x steady peak); without "
         "compaction (x steady mean); all caught up after",
         f"{s3['peak_per_second']} /s ({s3['ratio_to_steady']}x; {s3['ratio_to_steady_peak']}x); "
         f"{s3['peak_without_compaction_per_second']} /s ({s3['ratio_without_compaction_to_steady']}x); "
         f"{h['caught_up_after_s3_seconds']} s", "", ""),
        ("herd: 45 s STS outage (30 s credentials expire): the same, after STS's return",
         f"{sts['peak_per_second']} /s ({sts['ratio_to_steady']}x; {sts['ratio_to_steady_peak']}x); "
         f"{sts['peak_without_compaction_per_second']} /s ({sts['ratio_without_compaction_to_steady']}x); "
         f"{h['caught_up_after_sts_seconds']} s", "", ""),
        ("herd: without Litestream's level-0 uploads (the backlog), the peak second after S3's / STS's return (x "
         "its steady mean); the supervisors' own requests alone (x theirs)",
         f"{s3.get('peak_without_level0_per_second', '-')} /s ({s3.get('ratio_without_level0_to_its_steady', '-')}x) / "
         f"{sts.get('peak_without_level0_per_second', '-')} /s ({sts.get('ratio_without_level0_to_its_steady', '-')}x);"
         f" {s3.get('supervisors_peak_per_second', '-')} /s ({s3.get('ratio_supervisors_to_their_steady', '-')}x) / "
         f"{sts.get('supervisors_peak_per_second', '-')} /s ({sts.get('ratio_supervisors_to_their_steady', '-')}x)",
         f"level-0 files uploaded in the 30 s after each return: {s3.get('level0_uploads_in_30_s', '-')} / "
         f"{sts.get('level0_uploads_in_30_s', '-')}", ""),
        ("herd: Litestream restarts (120 s TTL group) / rows lost / exit 0",
         f"{h['litestream_restarts_long_ttl']} / {h['rows_lost']} of {h['rows_committed']} / "
         f"{h['exit_0']} of {h['sidecars']}", "", ""),
        (f"herd: the {h['default_ttl_sidecars']} sidecars on the default 30 s TTL: fenced / Litestream started again",
         f"{h['litestream_fences_default_ttl']} / {h['litestream_restarts_default_ttl']}", "", ""),
        ("herd: RSS per sidecar, supervisor + Litestream (median)",
         f"{h['supervisor_rss_mb_median']} MB + {h['litestream_rss_mb_median']} MB", "", ""),
    ]


def notes(r: dict[str, Any], results: dict[str, Any]) -> list[str]:
    if "herd" not in r:
        return []
    h = r["herd"]
    return [f"- herd: {h['sidecars']} real sidecars (started 0.25 s apart, {h['started_in_seconds']} s to all ready), "
            f"each with its own database, {CREDENTIALS_SECONDS} s credentials (refreshed at half-life), no drills; "
            "one writer thread commits to each database every 2 s; one counting proxy for S3 and one for STS in "
            "front of the bed's RGW, cut for the outages. Caught up: every sidecar's own lag metric under "
            f"{CAUGHT_UP_LAG_SECONDS:g} s (sampled every 2 s). Rows lost: every replica restored by bare "
            "Litestream at the end against what the writer committed. The peak after S3's return is the "
            "backlog: each Litestream uploads the level-0 files it staged during the outage (one per second of "
            "changes), so its size is the outage's length times the write rate, whoever sends it."]
