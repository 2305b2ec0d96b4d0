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
    lines += ["", *changes(previous, results)]
    for plot in plots or []:
        caption = CAPTIONS.get(plot, plot)
        lines += [f"![{caption}]({plot})", "", f"*{caption}.*", ""]
    lines += ["", "Notes:", "",
              "- how it runs: the supervisor as `python -OO -m supervisor` (the image sets PYTHONOPTIMIZE=2), "
              "bytecode precompiled; the bed's RGW with Nagle off (`tcp_nodelay=1`, as MinIO has it).",
              *(line for module in NOTES_ORDER for line in module.notes(r, results)),
              "- raw figures: `bench/results.json`.", ""]
    path.write_text("\n".join(lines))
