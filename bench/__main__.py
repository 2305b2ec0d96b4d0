"""`make bench`: every benchmark against the local bed, side by side with bare Litestream.

Writes bench/results.json and bench/RESULTS.md. Each figure is a median over --runs runs;
where there is a peer (bare Litestream with its own web-identity chain) the ratio is measured
in the same run. The benchmarks are in bench/benchmarks/ (one module each), the table and notes
in bench/report.py, the plots in bench/plots.py.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.benchmarks import MODULES, registry
from bench.report import write_markdown
from bench.runner import HERE, log
from supervisor import __version__
from tests.bed.testbed import Bed


def parse(benchmarks: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    for module in MODULES:
        if hasattr(module, "add_arguments"):
            module.add_arguments(parser)
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--compare-with", type=Path,
                        help="results.json to report changes against (default: the one being replaced)")
    parser.add_argument("--only", help="comma-separated benchmarks to run, updating results.json in place: "
                        + ", ".join(benchmarks))
    args = parser.parse_args()
    args.only_names = [name.strip() for name in args.only.split(",")] if args.only else list(benchmarks)
    unknown = [name for name in args.only_names if name not in benchmarks]
    if unknown:
        parser.error(f"--only: unknown benchmark {', '.join(unknown)}; expected some of {', '.join(benchmarks)}")
    if args.only and not (args.out / "results.json").is_file():
        parser.error(f"--only updates {args.out / 'results.json'}, which does not exist: run every benchmark "
                     "first (make bench)")
    return args


def main() -> int:
    benchmarks = registry()
    args = parse(list(benchmarks))
    from supervisor.identity import clients
    if clients.slim_data_dir() is None:
        # what the image and `make` give every process: without it each sidecar parses botocore's
        # whole S3 model at start and keeps ~4.5 MB more (idle A/B: 50.1 vs 45.6 MB)
        clients.write_slim_data()
        log(f"wrote the slim botocore data the image ships ({clients.DATA_DIR})")
    work = Path(tempfile.mkdtemp(prefix="litestream-supervisor-bench-"))
    log(f"bed in {work}")
    bed = Bed.up(work / "bed")
    today = datetime.date.today().isoformat()
    try:
        results: dict[str, Any] = {
            "date": today, "version": __version__,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
            "runs": args.runs, "benchmarks": {},
        }
        if args.only and (args.out / "results.json").exists():
            results = json.loads((args.out / "results.json").read_text())
        b = results["benchmarks"]
        for name in args.only_names:
            benchmark = benchmarks[name]
            entry = benchmark.put(b, name, benchmark.run(bed, work, args))
            if args.only:
                entry["date"] = today
        args.out.mkdir(parents=True, exist_ok=True)
        baseline = args.compare_with or args.out / "results.json"
        previous = json.loads(baseline.read_text()) if baseline.exists() else None
        (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        from bench.plots import draw
        plots = draw(results, args.out)
        write_markdown(results, args.out / "RESULTS.md", plots, previous)
        log(f"wrote {args.out / 'results.json'}, {args.out / 'RESULTS.md'} and {', '.join(plots)}")
    finally:
        bed.down()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
