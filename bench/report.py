"""RESULTS.md from results.json: the table (each benchmark module's rows, in order), what moved
since the previous results and why, the plots, and each module's notes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.benchmarks import MODULES, NOTES_ORDER
from bench.plots import CAPTIONS

WHY = {
    "restore overhead": "the same change as restore: exec -> credentials 0.21 -> 0.155 s; the overhead is now "
                        "0.13-0.15 s at every size in this run (0.146, 0.147, 0.134, 0.137 s at 25, 50, 100 and "
                        "230 MB), where it spread 0.18-0.26 s before",
    "restore": "the first STS request is sent as plain HTTP before botocore is imported (it left ~130 ms after "
               "exec, now ~70 ms) and STS answers while the rest loads; botocore's parser reads the answer. "
               "Same-session A/B against the previous commit (alternated runs on this machine's bed): exec -> "
               "credentials 0.208 -> 0.155 s, a small db's restore 0.312 -> 0.273 s, the 230 MB restore "
               "2.002 -> 1.945 s beside bare Litestream's 1.814 s (1.104 -> 1.072). The run count per size "
               "went from 9 to 15: one run in ten on this 2-core machine is ~0.3 s off, which moved a 9-run "
               "median ratio by a few percent (1.127 and 1.087 for the same commit)",
    "idle CPU": "issue 29: the token watch is told by the kernel (inotify) instead of watchfiles' thread waking "
                "every 50 ms, and the idle lag probe doubles its wait after each quiet round (up to 60 s) and "
                "wakes on a change to the database (see the section below)",
    "idle RSS": "issue 29: watchfiles and anyio left the sidecar, malloc_trim(0) 5 s after ready, one malloc "
                "arena; prometheus-client stays (see the section below)",
    "start to ready": "the sidecar sends its first STS request the same way (before botocore, asyncio and "
                      "structlog load): Litestream starts once the credentials are there",
}


def changes(previous: dict[str, Any] | None, results: dict[str, Any]) -> list[str]:
    """Figures that moved by more than 5 % since the previous results.json, and why."""
    if not previous:
        return []
    figures = {
        "idle RSS": ("idle", "supervisor_rss_mb", "MB"),
        "idle CPU": ("idle", "supervisor_cpu_seconds", "s"),
        "restore": ("restore", "ratio", "x"),
        "restore overhead": ("restore", "overhead_seconds", "s"),
        "start to ready": ("startup", "exec_to_readyz_200_seconds", "s"),
        "scale RSS, 20 dbs": ("scale_20", "supervisor_rss_mb", "MB"),
        "image": ("image", "image_mb", "MB"),
    }
    # figures recorded before the benchmark measured them (the image size was in the README)
    recorded = {("image", "image_mb"): 254.0}
    lines = []
    for label, (bench, key, unit) in figures.items():
        before = previous["benchmarks"].get(bench, {}).get(key, recorded.get((bench, key)))
        now = results["benchmarks"].get(bench, {}).get(key)
        threshold = 0.01 if unit == "x" else 0.05  # a ratio's few percent are the point
        if before is None or now is None or abs(now - before) <= threshold * abs(before):
            continue
        why = next((text for name, text in WHY.items() if label.startswith(name)), "not explained: noise or "
                   "a change not listed in bench/report.py WHY")
        lines.append(f"| {label} | {before} {unit} | {now} {unit} | {why} |")
    if not lines:
        return []
    # a results.json updated with --only holds figures of several dates: name them all
    dates = sorted({str(previous.get("date"))} | {str(v["date"]) for v in previous["benchmarks"].values()
                                                   if isinstance(v, dict) and "date" in v})
    return [f"## What changed since the previous results ({', '.join(dates)})", "", "| figure | before | now | why |",
            "|---|---|---|---|", *lines, ""]


# What issue 29 (many pods on one store, a long day) changed in the sidecar, and why: the figures
# above are of this code; the before figures are from the commits' own A/B runs.
ISSUE_29 = [
    "## Many pods on one store and a long day (issue 29): what changed and why", "",
    "| change | why | measured |", "|---|---|---|",
    "| the token watch is told by the kernel (supervisor/core/inotify.py, one instance per sidecar shared with the "
    "probe), not watchfiles' watcher thread | that thread woke every 50 ms to poll its stop event: 0.065 s of "
    "CPU per idle minute on its own, as much as Litestream's whole idle minute; one inotify instance because "
    "they are limited per user on a node (128 by default: two per sidecar would leave sidecars past the 64th "
    "polling) | idle CPU 0.07 -> 0.03 s/min, RSS -2 MB (A/B at the commit) |",
    "| the lag probe's idle wait doubles after each quiet round up to 60 s, ends at once on a change to a "
    "database file; its first listing starts at the replica's newest key | an idle sidecar probed every "
    "`--lag-interval` forever; a listing of the whole level costs with the replica's size | idle CPU at 0.5 s "
    "interval 0.09 -> 0.03 s/min; a probe's answer is the same size on a replica of 10 or 10,000 objects |",
    "| malloc_trim(0) 5 s after ready; one malloc arena (M_ARENA_MAX=1) for the sidecar | start-up's freed heap "
    "stayed resident for the pod's life; each short-lived thread could get an arena of its own (up to 16 "
    "here), each keeping free memory for weeks | idle RSS ~-1 MB; arenas 1 instead of up to 8 per core |",
    "| each sidecar starts its catch-up (lease renewal, reopen) after a random part of 15% of the outage, at "
    "most 10 s | every sidecar on a store sees it return in the same second: their backlogs and renewals "
    "landed in one second (23x the steady rate with 6 sidecars) | see the herd rows: the peak after the "
    "return against the steady rate |",
    "| with credentials gone, the keeper retries STS at least every 12-18 s (not a backoff up to 72 s); a "
    "refusal keeps the long backoff; the backoff's exponent is bounded | a herd caught up 73 s after STS "
    "returned: each keeper was waiting out its minute-long backoff while Litestream had nothing to upload "
    "with; attempt 1025 overflowed a float (about 4 h of outage) | herd: every sidecar caught up 32.7 s after "
    "STS's return (was 73.3 s) |",
    "| while the replica cannot be listed the probe looks every 0.5-1 s for the first 10 s, then less often as "
    "the outage lasts (up to every 2.5-5 s) | 50 sidecars probing a lost store every 0.5-1 s sent it ~67 "
    "requests/s through an STS outage, 4x the supervisors' steady rate, and all saw its return in one second "
    "| supervisors' requests during the 45 s STS outage: ~35/s at its end (was ~67/s); a 10 s outage is still "
    "caught up within 3 s (the catch-up bench) |",
    "| the catch-up's first sync after a reopen may take 30 s (was 10 s); a reopen in place only while the "
    "WAL guard holds the database and its file is the one Litestream opened, else a restart (whose start "
    "checks the WAL) | under the herd every restart left was a reopen whose sync timed out behind the fresh "
    "uploader's first round; a hostile review found the reopen skipped the WAL check of a process start | "
    "herd: 10 restarts in the 120 s-TTL group, each a `stop` Litestream answered with an error (next row) |",
    "| a close that Litestream answers with an error is followed by the start through the socket, not a "
    "restart; only silence, a start that finds the database open, a refused start or a Litestream fenced or "
    "restarted meanwhile end in a restart (and never of a Litestream started since) | those 10 restarts were "
    "all such answers: Litestream (0.5.15 on) closes the database whatever its final upload did, and that "
    "upload had failed on a connection the outage left dead or with credentials fetched too late | herd: 0 "
    "restarts in the 120 s-TTL group in two runs (was 10); peak after STS's return 152/s (was 357/s) |",
    "| each sidecar's Litestream gets the default compaction levels (30 s, 5 min, 1 h) lengthened, and the "
    "daily snapshot shortened, by its own random part of 5% in nanoseconds (supervisor/litestream/schedule.py), "
    "where litestream.yml names none | Litestream 0.5.17 compacts each level and snapshots at "
    "`now.Truncate(interval) + interval` on the wall clock, so every sidecar on a store compacted level 1 in "
    "the same second every 30 s, and snapshotted its whole database at 00:00 UTC | herd, steady: the peak "
    "second 84/s, 1.5x the mean (was 238/s, 4.4x); the snapshots of 50 sidecars at most 1 a second (a "
    "unit-test model of Litestream's schedule: was 50 at midnight) |",
    "| restore drills give the freed heap back (malloc_trim(0) after each round, off the event loop) | in a 2 h "
    "soak the supervisor's RSS stepped 1-2 MB at drills and held: 1.09 MB per 1,000 refreshes | 2 h soak: 0.04 "
    "MB per 1,000 refreshes, flat at 50.5-52.5 MB |",
    "| tried, not shipped (branch outage-pause): close Litestream's databases through the socket while the "
    "store is away, reopen them spread | the backlog then goes up as one file per database instead of one per "
    "second of outage (24 -> at most 12 files in an e2e test) | herd peak after S3's return 158/s (2.9x the "
    "mean, 0.8x the steady peak), 3 restarts; but Litestream 0.5.17's close can stay blocked while its "
    "uploader retries the lost store, and a reopen or a shutdown then waited on it (a restart, an exit 10 "
    "with S3 back, /readyz stalled in e2e runs): not safe enough to ship yet |",
    "| not done: a hand-written Prometheus exposition instead of prometheus-client | the project keeps "
    "prometheus-client for metrics; its exposition module imports http.server, socketserver and wsgiref "
    "into the sidecar | ~0.5 MB of idle RSS kept (44.5 vs ~44.0 MB in the A/B at that commit); no CPU "
    "difference measured |",
    "| each busy or idle probe round waits 80-120% of its interval, the first after a recovery 50-150%; a "
    "lease renewal comes after 80-100% of TTL/3 (never later) | the herd bench, split by who sent what, "
    "showed the supervisors' requests after S3's return as a comb for minutes: 20-25/s for three seconds, "
    "0-4/s for two, every 5 s, and 31-39 lease PUTs/s every 40 s: exact periods kept the phase the return "
    "gave every sidecar | herd: the supervisors' rate back to 15 +/- 6/s within ~7 s of S3's return (see "
    "herd.png); unit models: 50 probes at most 22 listings in one second (was 50), 50 leases at most 20 "
    "renewals in one second (was 50); idle lease PUTs ~9% more (a period 0.9 of TTL/3 on average) |",
    "| with the credentials expired (STS away past their expiry) the probe sends no listing; the round "
    "still reads the local side, so the lag grows | every round listed the replica, which can only refuse "
    "expired credentials (and each refusal was classified after a fresh STS exchange was tried) | herd, "
    "through the 45 s STS outage: the supervisors' requests 0-8/s (were 45-63/s, 3-4x their steady rate); "
    "after STS's return their peak second 1.6x their steady rate |", "",
    "These rows come from short runs on a 2-core, 24 GB machine that another test run shared: `python -m bench "
    "--only idle,requests,herd,soak,catchup --budget-seconds 90 --herd-steady-seconds 30 --minutes 3 "
    "--catchup-runs 3`; the herd and the request budget again at the final code (`--only herd`, `--only "
    "requests`, at 3b52339); the soak row is a 2 h "
    "run (`python -m bench --only soak --minutes 120`, at 0a993a7, a restore drill every 5 minutes; in a "
    "clone without the slim botocore data `make` writes, so its RSS is ~4.5 MB above the image's: idle A/B "
    "50.1 vs 45.6 MB; the bench now writes that data first). The "
    "long soak is `python -m bench --only soak --minutes 240` (about 4 h 10 min with the bed); the goals it "
    "checks are RSS within 1 MB per 1,000 refreshes after warm-up, descriptors and threads flat, 0 Litestream "
    "restarts, 0 rows lost: all met in the 2 h run.", "",
    "Not met (issue 29, blocked on Litestream): the peak second after an outage within 2x the steady rate. "
    "The steady state is (the peak second 1.5-1.9x the mean of ~55/s across runs). After S3's 30 s outage "
    "the peak is 265-296/s (4.9-5.4x in three runs), about 200 of it Litestream's level-0 PUTs: each "
    "Litestream's backlog is one file per second with changes during the outage (one per sync; ~1,460 files "
    "for the 50 sidecars), which they send over the 4.5 s of their catch-up spread (15% of the outage). "
    "After STS's 45 s outage it is 166-205/s (3.0-3.7x). What the supervisors send themselves is spread: "
    "after STS's return their peak second is 1.6x their own steady rate, after S3's 2.5x for its first three "
    "seconds (each sidecar notices the return, renews its lease and checks its catch-up: three requests), "
    "then back to steady. That backlog is committed data waiting for the replica: sending it at no more than "
    "one extra steady rate takes at least the outage's own length, and with 50 sidecars starting at random "
    "moments more (a second where five start together sends five backlogs), so the replica would stay behind "
    "for minutes after every outage; a start spread cannot do it, only a pace inside each Litestream. We "
    "keep recovery fast (every sidecar caught up 8-9 s after S3's return) and state the peak a store must "
    "absorb: every sidecar's level-0 backlog (up to one file per second of outage each) over 15% of the "
    "outage (at most 10 s). Fewer or paced uploads need Litestream: 0.5.17 uploads each sync's file with a "
    "PUT of its own, at once; upstream chose to drain a backlog without a pause (#1331, #1345: "
    "`max-sync-ltx-files` only splits the loop). Keeping Litestream closed while the store is away would "
    "make the backlog one file, but 0.5.17's close can block while its uploader retries the lost store "
    "(branch outage-pause, above), and killing it instead is the restart this issue rules out.", "",
]


def write_markdown(results: dict[str, Any], path: Path, plots: list[str] | None = None,
                   previous: dict[str, Any] | None = None) -> None:
    r = results["benchmarks"]
    rows = [row for module in MODULES if hasattr(module, "rows") for row in module.rows(r)]
    rerun: dict[str, list[str]] = {}
    for name, value in r.items():
        if isinstance(value, dict) and value.get("date", results["date"]) != results["date"]:
            rerun.setdefault(value["date"], []).append(name)
    again = "".join(f" Rerun on {day} (`--only {','.join(names)}`): those rows and their peers come from that run."
                    for day, names in sorted(rerun.items()))
    lines = [
        "# Benchmarks", "",
        f"Measured {results['date']} on {results['machine']} by `make bench` (medians of {results['runs']} runs, "
        f"{r.get('restore_sizes', [{}])[0].get('runs', results['runs'])} per restore size; "
        f"the peer is bare Litestream 0.5.17 with its own web-identity chain, in the same run).{again}", "",
        "| measure | litestream-supervisor | peer | ratio |", "|---|---|---|---|",
    ]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    lines += ["", *changes(previous, results), *ISSUE_29]
    for plot in plots or []:
        caption = CAPTIONS.get(plot, plot)
        lines += [f"![{caption}]({plot})", "", f"*{caption}.*", ""]
    lines += ["", "Notes:", "",
              "- how it runs: the supervisor as `python -OO -m supervisor` (the image sets PYTHONOPTIMIZE=2), "
              "bytecode precompiled; the bed's RGW with Nagle off (`tcp_nodelay=1`, as MinIO has it).",
              *(line for module in NOTES_ORDER for line in module.notes(r, results)),
              "- raw figures: `bench/results.json`.", ""]
    path.write_text("\n".join(lines))
