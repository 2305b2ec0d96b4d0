"""What verifying costs (issue 27), per database size: a restore drill in the sidecar and the
`verify --compare` command (wall time, CPU of the supervisor and of its Litestream restore child,
peak bytes in --scratch-dir, requests to the store), and the final content check's share of a
shutdown."""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from bench.measure import CLOCK_TICKS, wait_until
from bench.proxy import CountingProxy, counts
from bench.runner import Benchmark, Row, log, new_pod, timestamp
from tests.bed.pod import supervisor_cmd
from tests.bed.replicas import make_db
from tests.bed.testbed import Bed

DRILL_INTERVAL_SECONDS = 30.0  # the first drill 27-33 s after start: the initial upload is done by then


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--drill-mb", type=int, nargs="+", default=[25, 100, 230],
                        help="database sizes for the drill benchmark")


def cpu_with_children(pid: int) -> float:
    """utime + stime of the process and of its children it has waited for (Litestream's restore)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / CLOCK_TICKS


def disk_bytes(directory: Path) -> int:
    total = 0
    for entry in directory.rglob("*"):
        with contextlib.suppress(FileNotFoundError):
            total += entry.lstat().st_blocks * 512
    return total


class Sampler:
    """Every 20 ms: bytes in the scratch directory, and the process's CPU (with its children)."""

    def __init__(self, scratch: Path, pid: int | None = None) -> None:
        self.scratch, self.pid = scratch, pid
        self.samples: list[tuple[float, int, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(0.02):
            try:
                cpu = cpu_with_children(self.pid) if self.pid else 0.0
            except OSError:
                cpu = 0.0
            self.samples.append((time.time(), disk_bytes(self.scratch), cpu))

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def within(self, start: float, end: float) -> tuple[int, float]:
        """(peak scratch bytes, CPU seconds) between two wall-clock times."""
        inside = [s for s in self.samples if start - 0.05 <= s[0] <= end + 0.05]
        if not inside:
            return 0, 0.0
        return max(s[1] for s in inside), round(inside[-1][2] - inside[0][2], 3)


def one_size(bed: Bed, work: Path, megabytes: int) -> dict[str, Any]:
    pod = new_pod(bed, work)
    rows = megabytes * 1024 * 1024 // 4200
    make_db(pod.db(), rows, payload_bytes=2048)
    size = pod.db().stat().st_size
    proxy = CountingProxy(bed.cluster.rgw_port, "drill").start()
    pod.endpoint = proxy.url
    pod.write_config()
    scratch = pod.root / "scratch"
    scratch.mkdir()
    sup = pod.start_replicate("--verify-interval", str(DRILL_INTERVAL_SECONDS), "--scratch-dir", str(scratch),
                              env=pod.env(AWS_ENDPOINT_URL_STS=bed.endpoint))
    try:
        wait_until(lambda: sup.get("/readyz")[0] == 200, 120, "ready")
        sampler = Sampler(scratch, sup.proc.pid).start()
        wait_until(lambda: sup.count("drill_verified") + sup.count("drill_failed") >= 1, 300, "the first drill")
        sampler.stop()
        drill = next(e for e in sup.events() if e.get("event") in ("drill_verified", "drill_failed"))
        end = timestamp(drill)
        start = end - float(drill["seconds"])
        peak, cpu = sampler.within(start, end)
        requests = counts(proxy.records, start, end + 0.05)
        # the verify command, as a person runs it (beside the running sidecar)
        verify_scratch = pod.root / "verify-scratch"
        verify_scratch.mkdir()
        command = Sampler(verify_scratch).start()
        t0 = time.time()
        proc = subprocess.Popen(supervisor_cmd("verify", "--compare", "--scratch-dir", str(verify_scratch)),
                                env=pod.env(AWS_ENDPOINT_URL_STS=bed.endpoint), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        verify_seconds = time.time() - t0
        command.stop()
        verify_output = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
        # the final check's share of the shutdown
        t0 = time.monotonic()
        code = sup.terminate(timeout=300)
        shutdown_seconds = time.monotonic() - t0
        final = next((e for e in sup.events() if e.get("event") == "final_content_verified"), None)
    finally:
        proxy.stop()
        pod.close()
    out = {
        "megabytes": megabytes, "db_bytes": size, "drill_result": drill.get("result"),
        "drill_seconds": round(float(drill["seconds"]), 3), "drill_cpu_seconds": cpu, "drill_peak_scratch_bytes": peak,
        "drill_requests": sum(requests.values()),
        "drill_requests_by_kind": {" ".join(k): v for k, v in sorted(requests.items())},
        "verify_exit_code": os.waitstatus_to_exitcode(status), "verify_seconds": round(verify_seconds, 3),
        "verify_cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),
        "verify_peak_scratch_bytes": max((s[1] for s in command.samples), default=0),
        "verify_line": verify_output.strip().splitlines()[-1] if verify_output.strip() else "",
        "shutdown_exit_code": code, "shutdown_seconds": round(shutdown_seconds, 3),
        "final_check_seconds": float(final["seconds"]) if final else None,
    }
    out["final_check_share"] = round(out["final_check_seconds"] / shutdown_seconds, 3) if final else None
    log(f"drills {megabytes} MB: {out}")
    return out


def per_100mb(value: float, size: int) -> float:
    return round(value / (size / 100e6), 3)


def bench_drills(bed: Bed, work: Path, sizes_mb: list[int]) -> dict[str, Any]:
    sizes = [one_size(bed, work, mb) for mb in sorted(sizes_mb)]
    largest = sizes[-1]
    return {
        "sizes": sizes,
        "drill_seconds_per_100mb": per_100mb(largest["drill_seconds"], largest["db_bytes"]),
        "drill_cpu_seconds_per_100mb": per_100mb(largest["drill_cpu_seconds"], largest["db_bytes"]),
        "drill_peak_scratch_per_db_byte": round(largest["drill_peak_scratch_bytes"] / largest["db_bytes"], 3),
        "verify_seconds_per_100mb": per_100mb(largest["verify_seconds"], largest["db_bytes"]),
        "verify_cpu_seconds_per_100mb": per_100mb(largest["verify_cpu_seconds"], largest["db_bytes"]),
        "note": "the sidecar's first drill (--verify-interval 30, --scratch-dir on the same disk) on an idle "
                "database: Litestream's restore at nice 19 / idle I/O into scratch, PRAGMA integrity_check, the "
                "page comparison; CPU is the sidecar's with its reaped children (the restore) over the drill's "
                "own start and end (its log), scratch bytes sampled every 20 ms (blocks on disk), requests counted "
                "by a proxy in front of the store in that window. `verify --compare` runs as a person runs it, "
                "beside the sidecar: CPU from wait4 (with its Litestream child). The shutdown is SIGTERM -> exit "
                "of that sidecar right after, its final content check from its own log",
    }


BENCHMARKS = {"drills": Benchmark(lambda bed, work, a: bench_drills(bed, work, a.drill_mb))}


def rows(r: dict[str, Any]) -> list[Row]:
    if "drills" not in r:
        return []
    d = r["drills"]
    out: list[Row] = []
    for s in d["sizes"]:
        mb = s["db_bytes"] / 1e6
        out.append((f"restore drill, {mb:.0f} MB db: time; CPU (supervisor + restore); peak scratch; requests",
                    f"{s['drill_seconds']} s; {s['drill_cpu_seconds']} s; "
                    f"{s['drill_peak_scratch_bytes'] / 1e6:.0f} MB; {s['drill_requests']}",
                    f"verify --compare: {s['verify_seconds']} s; {s['verify_cpu_seconds']} s; "
                    f"{s['verify_peak_scratch_bytes'] / 1e6:.0f} MB", ""))
    big = d["sizes"][-1]
    out += [
        ("restore drill per 100 MB: time; CPU; scratch disk", f"{d['drill_seconds_per_100mb']} s; "
         f"{d['drill_cpu_seconds_per_100mb']} s; {d['drill_peak_scratch_per_db_byte']} x the database", "", ""),
        (f"final content check's share of a {big['db_bytes'] / 1e6:.0f} MB shutdown (SIGTERM -> exit "
         f"{big['shutdown_exit_code']})", f"{big['final_check_seconds']} s of {big['shutdown_seconds']} s "
         f"({(big['final_check_share'] or 0) * 100:.0f} %)", "", ""),
    ]
    return out


def notes(r: dict[str, Any], results: dict[str, Any]) -> list[str]:
    return [f"- drills: {r['drills']['note']}."] if "drills" in r else []
