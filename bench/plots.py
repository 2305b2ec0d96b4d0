"""PNG plots for bench/RESULTS.md, drawn from the same run's raw values in results.json.

`python -m bench.plots` redraws them from bench/results.json without running anything.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
COLORS = {"supervisor": "#1f77b4", "bare": "#ff7f0e"}
LABELS = {"supervisor": "litestream-supervisor", "bare": "bare Litestream 0.5.17"}
# RESULTS.md's caption for each plot
CAPTIONS = {
    "timeline.png": "Replication lag and credential validity through refreshes, a token rotation and an S3 outage, "
                    "supervisor and bare Litestream in the same window",
    "restore-sizes.png": "Restore wall time per database size (integrity check on)",
}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display here or in CI
    import matplotlib.pyplot as plt

    return plt


def timeline(data: dict[str, Any], path: Path) -> None:
    """Replication lag and credential validity over one window, both side by side, with the
    events (token rotation, S3 outage) marked."""
    plt = _pyplot()
    fig, (lag_ax, cred_ax) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for who in ("supervisor", "bare"):
        series = data[who]
        lag_ax.plot(series["t"], series["lag_seconds"], color=COLORS[who], label=LABELS[who], linewidth=1.2,
                    linestyle="-" if who == "supervisor" else "--")
        cred_ax.plot(series["t"], series["credentials_left_seconds"], color=COLORS[who], label=LABELS[who],
                     linewidth=1.2, linestyle="-" if who == "supervisor" else "--")
    for ax in (lag_ax, cred_ax):
        start, end = data["outage"]
        ax.axvspan(start, end, color="#d62728", alpha=0.12, label="S3 outage" if ax is lag_ax else None)
        ax.axvline(data["rotation"], color="#2ca02c", linestyle=":", label="token rotated" if ax is lag_ax else None)
        ax.grid(alpha=0.3)
    lag_ax.set_ylabel("replication lag (s)")
    lag_ax.set_title("Replication lag: age of the oldest local change not yet in the replica")
    lag_ax.legend(loc="upper left", fontsize=8)
    cred_ax.set_ylabel("credentials valid for (s)")
    cred_ax.set_yscale("symlog", linthresh=30)  # 10 s credentials and 3600 s ones on one axis
    cred_ax.set_ylim(bottom=0)
    lag_ax.set_ylim(bottom=0)
    cred_ax.set_xlabel("seconds since the writer started")
    cred_ax.set_title(textwrap.fill(data["credentials_note"], 120), fontsize=8)
    cred_ax.legend(loc="center left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def restore_sizes(data: list[dict[str, Any]], path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    sizes = [d["db_bytes"] / 1e6 for d in data]
    for who in ("supervisor", "bare"):
        ax.plot(sizes, [d[f"{who}_seconds"] for d in data], marker="o", color=COLORS[who], label=LABELS[who])
    for d, size in zip(data, sizes, strict=True):
        ax.annotate(f"{d['ratio']:.3f}x", (size, d["supervisor_seconds"]), textcoords="offset points",
                    xytext=(0, 8), ha="center", fontsize=8)
    ax.margins(y=0.15)
    ax.set_xlabel("database size (MB)")
    ax.set_ylabel("restore wall time (s), median")
    ax.set_title("Restore time per size (labels: supervisor / bare)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def draw(results: dict[str, Any], out: Path) -> list[str]:
    """Every plot the results have data for; returns the file names written."""
    b = results["benchmarks"]
    written = []
    if "timeline" in b:
        timeline(b["timeline"], out / "timeline.png")
        written.append("timeline.png")
    if "restore_sizes" in b:
        restore_sizes(b["restore_sizes"], out / "restore-sizes.png")
        written.append("restore-sizes.png")
    return written


if __name__ == "__main__":
    print(draw(json.loads((HERE / "results.json").read_text()), HERE))
    sys.exit(0)
