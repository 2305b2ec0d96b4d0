"""The request budget (issue 29): every request the supervisor itself sends (STS, the probe's and
the lease's S3 calls) per database-hour, idle and under a steady writer, beside Litestream's own
in the same run, and bare Litestream's; counted by a proxy in front of the store (one per pod, S3
and STS each). Then the replica is padded to 10,000 objects: a probe must cost what it did."""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.measure import wait_until
from bench.proxy import CountingProxy, Request, counts
from bench.runner import Benchmark, Row, bare_replicate, log, new_pod
from tests.bed.net import free_port
from tests.bed.pod import Writer, connect
from tests.bed.replicas import bare_env
from tests.bed.testbed import Bed

PADDING_OBJECTS = 10_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--budget-seconds", type=float, default=120,
                        help="length of each phase of the request budget (idle, steady writer, padded replica)")


def per_hour(records: list[Request], start: float, end: float, **match: str) -> dict[str, float]:
    """`who op what` -> requests per hour within [start, end)."""
    scale = 3600 / (end - start)
    return {" ".join(k): round(v * scale, 1) for k, v in sorted(counts(records, start, end, **match).items())}


def total(rates: dict[str, float], who: str) -> float:
    return round(sum(v for k, v in rates.items() if k.startswith(who + " ")), 1)


def probe_listings(records: list[Request], start: float, end: float) -> dict[str, float]:
    """The supervisor's level-0 listings in a window: how many, and what each answered (bytes)."""
    listed = [r for r in records if start <= r.at < end and r.who == "supervisor" and r.op == "LIST"
              and r.what == "level-0"]
    sizes = [r.answer_bytes for r in listed if r.status == 200]
    return {"listings": len(listed), "median_answer_bytes": statistics.median(sizes) if sizes else 0,
            "max_answer_bytes": max(sizes, default=0)}


def pad(bed: Bed, prefix: str, objects: int) -> list[str]:
    """Objects in the replica's prefix at level 3, as a long-lived replica has (written around the
    proxy: not counted)."""
    s3 = bed.admin_s3()
    keys = [f"{prefix}/0003/{i:016x}-{i:016x}.ltx" for i in range(1, objects + 1)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=bed.role.bucket, Key=k, Body=b"padding"), keys))
    return keys


def unpad(bed: Bed, keys: list[str]) -> None:
    s3 = bed.admin_s3()
    for i in range(0, len(keys), 1000):
        s3.delete_objects(Bucket=bed.role.bucket, Delete={"Objects": [{"Key": k} for k in keys[i:i + 1000]]})


def bench_requests(bed: Bed, work: Path, seconds: float) -> dict[str, Any]:
    records: list[Request] = []
    pods, proxies = {}, []
    for who in ("supervisor", "bare"):
        pod = new_pod(bed, work)
        connect(pod.db()).close()
        s3 = CountingProxy(bed.cluster.rgw_port, f"{who}-s3", records=records).start()
        sts = CountingProxy(bed.cluster.rgw_port, f"{who}-sts", records=records).start()
        proxies += [s3, sts]
        pod.endpoint = s3.url
        pod.write_config()
        pods[who] = (pod, sts)
    pod, sts = pods["supervisor"]
    # as a user runs it (default --lag-interval, lease, credentials), drills measured on their own
    sup = pod.start("replicate", "--health-addr", f"127.0.0.1:{free_port()}", "--verify-interval", "0",
                    env=pod.env(AWS_ENDPOINT_URL_STS=sts.url))
    bare_pod, bare_sts = pods["bare"]
    bare = bare_replicate(bare_pod, {**bare_env(bare_pod), "AWS_ENDPOINT_URL_STS": bare_sts.url})
    try:
        wait_until(lambda: sup.count("ready") == 1, 60, "ready")
        time.sleep(15)  # start-up done (the first compactions, the first idle rounds)
        phases: dict[str, tuple[float, float]] = {}
        t0 = time.time()
        time.sleep(seconds)
        phases["idle"] = (t0, time.time())
        writers = [Writer(p.db(), 0.5).start() for p, _ in pods.values()]
        time.sleep(5)
        t0 = time.time()
        time.sleep(seconds)
        phases["steady"] = (t0, time.time())
        log(f"requests: padding the replica to {PADDING_OBJECTS} objects")
        padding = pad(bed, pod.prefix + "/app.db", PADDING_OBJECTS)
        t0 = time.time()
        time.sleep(min(seconds, 120))
        phases["padded"] = (t0, time.time())
        for w in writers:
            w.stop()
        unpad(bed, padding)
    finally:
        code = sup.terminate()
        bare.terminate()
        bare.wait(timeout=60)
        for p in proxies:
            p.stop()
        for p, _ in pods.values():
            p.close()
    out: dict[str, Any] = {"seconds_per_phase": seconds, "exit_code": code, "phases": {}}
    for phase, (start, end) in phases.items():
        sup_rates = per_hour(records, start, end, proxy="supervisor-s3") | \
            per_hour(records, start, end, proxy="supervisor-sts")
        bare_rates = per_hour(records, start, end, proxy="bare-s3") | per_hour(records, start, end, proxy="bare-sts")
        out["phases"][phase] = {
            "seconds": round(end - start, 1),
            "supervisor_per_hour": total(sup_rates, "supervisor"),
            "its_litestream_per_hour": total(sup_rates, "litestream"),
            "bare_litestream_per_hour": total(bare_rates, "litestream"),
            "supervisor_by_kind": {k: v for k, v in sup_rates.items() if k.startswith("supervisor ")},
            "its_litestream_by_kind": {k: v for k, v in sup_rates.items() if k.startswith("litestream ")},
            "bare_by_kind": bare_rates,
            "probe": probe_listings(records, start, end),
            "errors": sum(1 for r in records if start <= r.at < end and r.status >= 400
                          and not (r.what == "lease-probe" and r.status == 412)),
        }
        log(f"requests {phase}: {out['phases'][phase]['supervisor_per_hour']}/h supervisor, "
            f"{out['phases'][phase]['its_litestream_per_hour']}/h its Litestream, "
            f"{out['phases'][phase]['bare_litestream_per_hour']}/h bare")
    idle, steady = out["phases"]["idle"], out["phases"]["steady"]
    per_pod = {p: round((out["phases"][p]["supervisor_per_hour"] + out["phases"][p]["its_litestream_per_hour"])
                        / 3600, 3) for p in ("idle", "steady")}
    out["per_pod_per_second"] = per_pod
    out["per_1000_pods_per_second"] = {p: round(v * 1000, 1) for p, v in per_pod.items()}
    out["supervisor_idle_vs_litestream_idle"] = round(idle["supervisor_per_hour"]
                                                      / max(idle["its_litestream_per_hour"], 1), 3)
    out["supervisor_steady_vs_litestream_steady"] = round(steady["supervisor_per_hour"]
                                                          / max(steady["its_litestream_per_hour"], 1), 3)
    out["note"] = (f"one database per pod, each phase {seconds:g} s (the padded one at most 120 s), per-hour "
                   "rates scaled from the counts; the supervisor with its defaults (--lag-interval 5, the lease "
                   "renewed after 80-100% of TTL/3 = 8-10 s, credentials of RGW's default hour refreshed 900 s "
                   "before expiry) and "
                   "--verify-interval 0 (a drill's requests are in the drills rows: one an hour by default); the "
                   "steady writer commits twice a second; STS and S3 each behind their own counting proxy, the "
                   "requests told apart by User-Agent (the supervisor's botocore, Litestream's Go SDK). Padded: "
                   f"{PADDING_OBJECTS} more objects written into the replica's prefix (level 3) under the same writer")
    return out


BENCHMARKS = {"requests": Benchmark(lambda bed, work, a: bench_requests(bed, work, a.budget_seconds))}


def rows(r: dict[str, Any]) -> list[Row]:
    if "requests" not in r:
        return []
    q = r["requests"]
    out: list[Row] = []
    for phase, label in (("idle", "idle"), ("steady", "steady writer (2 commits/s)")):
        p = q["phases"][phase]
        kinds = ", ".join(f"{k.split(' ', 1)[1]} {v:g}" for k, v in p["supervisor_by_kind"].items())
        out.append((f"requests per database-hour, {label}: supervisor ({kinds}) / its Litestream",
                    f"{p['supervisor_per_hour']:g} / {p['its_litestream_per_hour']:g}",
                    f"bare Litestream: {p['bare_litestream_per_hour']:g}",
                    round(p["supervisor_per_hour"] / max(p["its_litestream_per_hour"], 1), 3)))
    steady, padded = q["phases"]["steady"]["probe"], q["phases"]["padded"]["probe"]
    out += [
        ("requests at the store per pod per second (supervisor + Litestream), idle / steady; per 1,000 pods",
         f"{q['per_pod_per_second']['idle']} / {q['per_pod_per_second']['steady']}",
         f"{q['per_1000_pods_per_second']['idle']:g} / {q['per_1000_pods_per_second']['steady']:g} per second", ""),
        (f"a probe's listing, replica of a few objects vs padded to {PADDING_OBJECTS:,} (median answer bytes)",
         f"{steady['median_answer_bytes']:g} B", f"{padded['median_answer_bytes']:g} B", ""),
    ]
    return out


def notes(r: dict[str, Any], results: dict[str, Any]) -> list[str]:
    return [f"- requests: {r['requests']['note']}."] if "requests" in r else []
