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
    "catchup.png": "Catch-up after a 10 s S3 outage, each run: from S3's return until the replica holds every "
                   "commit made before it, supervisor and bare Litestream",
    "requests.png": "Requests per database-hour at the store, idle and under a steady writer: the supervisor's own "
                    "beside Litestream's",
    "drills.png": "What a restore drill costs per database size: time, CPU (supervisor and its restore child), peak "
                  "scratch disk",
    "herd.png": "Many sidecars on one store: requests per second at the store through a 30 s S3 outage and an STS "
                "outage past the credentials' expiry, and how many sidecars were behind",
    "soak.png": "The soak: the supervisor's RSS, open descriptors, threads and CPU through refreshes every 5 s, a "
                "token rotation every 30 s, restore drills, a steady writer and two S3 outages",
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


def catchup(data: dict[str, Any], path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for who in ("supervisor", "bare"):
        values = data[who]["runs_seconds"]
        ax.plot(range(1, len(values) + 1), values, marker="o", linestyle="", color=COLORS[who], label=LABELS[who])
    ax.axhline(data["goal_seconds"], color="#2ca02c", linestyle=":", label=f"goal: {data['goal_seconds']:g} s")
    ax.set_yscale("symlog", linthresh=1)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("run")
    ax.set_ylabel("seconds from S3's return until caught up")
    ax.set_title(f"Catch-up after a {data['outage_seconds']:g} s S3 outage (seen from the replica)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def requests(data: dict[str, Any], path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    phases = [p for p in ("idle", "steady") if p in data["phases"]]
    bars = [("supervisor_per_hour", "the supervisor itself", COLORS["supervisor"]),
            ("its_litestream_per_hour", "its Litestream", "#9467bd"),
            ("bare_litestream_per_hour", "bare Litestream", COLORS["bare"])]
    width = 0.8 / len(bars)
    for k, (key, label, color) in enumerate(bars):
        xs = [i + (k - 1) * width for i in range(len(phases))]
        values = [data["phases"][p][key] for p in phases]
        ax.bar(xs, values, width, label=label, color=color)
        for x, v in zip(xs, values, strict=True):
            ax.annotate(f"{v:g}", (x, v), textcoords="offset points", xytext=(0, 3), ha="center", fontsize=8)
    ax.set_xticks(range(len(phases)), [f"{p} (per database-hour)" for p in phases])
    ax.set_ylabel("requests per hour")
    ax.set_title("Requests at the store per database-hour")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def drills(data: dict[str, Any], path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    sizes = [d["db_bytes"] / 1e6 for d in data["sizes"]]
    ax.plot(sizes, [d["drill_seconds"] for d in data["sizes"]], marker="o", label="drill wall time (s)")
    ax.plot(sizes, [d["drill_cpu_seconds"] for d in data["sizes"]], marker="s", label="drill CPU (s)")
    ax.plot(sizes, [d["verify_seconds"] for d in data["sizes"]], marker="^", linestyle="--",
            label="verify --compare wall time (s)")
    twin = ax.twinx()
    twin.plot(sizes, [d["drill_peak_scratch_bytes"] / 1e6 for d in data["sizes"]], color="#7f7f7f", marker="x",
              linestyle=":", label="peak scratch (MB, right)")
    twin.set_ylabel("peak scratch disk (MB)")
    ax.set_xlabel("database size (MB)")
    ax.set_ylabel("seconds")
    ax.set_title("Restore drill cost per database size")
    ax.grid(alpha=0.3)
    lines = ax.get_legend_handles_labels()
    more = twin.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def herd(data: dict[str, Any], path: Path) -> None:
    plt = _pyplot()
    fig, (rate_ax, lag_ax) = plt.subplots(2, 1, figsize=(9, 6), sharex=True, height_ratios=[3, 1])
    series = data["series"]
    rate_ax.plot(series["t"], series["total"], color="black", linewidth=1, label="all requests")
    rate_ax.plot(series["t"], series["litestream"], color="#9467bd", linewidth=0.8, label="Litestreams")
    rate_ax.plot(series["t"], series["supervisor"], color=COLORS["supervisor"], linewidth=0.8, label="supervisors")
    rate_ax.axhline(2 * data["steady_requests_per_second"], color="#d62728", linestyle=":", linewidth=1,
                    label="2 x steady")
    marks = data["marks"]
    for ax in (rate_ax, lag_ax):
        ax.axvspan(marks["s3_cut"], marks["s3_back"], color="#d62728", alpha=0.12,
                   label="S3 outage" if ax is rate_ax else None)
        ax.axvspan(marks["sts_cut"], marks["sts_back"], color="#ff7f0e", alpha=0.12,
                   label="STS outage" if ax is rate_ax else None)
        ax.grid(alpha=0.3)
    lag_ax.step(data["lag_series"]["t"], data["lag_series"]["behind"], where="post", color="#8c564b")
    lag_ax.set_ylabel("sidecars behind")
    lag_ax.set_xlabel("seconds")
    rate_ax.set_ylabel("requests per second at the store")
    rate_ax.set_title(f"{data['sidecars']} sidecars on one store")
    rate_ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def soak(data: dict[str, Any], path: Path) -> None:
    plt = _pyplot()
    fig, axes = plt.subplots(4, 1, figsize=(9, 8), sharex=True)
    t = [s["t"] / 60 for s in data["samples"]]
    panels = [(("rss_mb", "supervisor"), ("litestream_rss_mb", "its Litestream"), "RSS (MB)"),
              (("fds", "supervisor"), ("litestream_fds", "its Litestream"), "open descriptors"),
              (("threads", "supervisor"), None, "threads"),
              (("cpu_seconds", "supervisor"), ("litestream_cpu_seconds", "its Litestream"), "CPU (s, cumulative)")]
    for ax, (first, second, label) in zip(axes, panels, strict=True):
        for key, name in (first, second) if second else (first,):
            ax.plot(t, [s[key] for s in data["samples"]], label=name, linewidth=1)
        for start, end in data["outages"]:
            ax.axvspan(start / 60, end / 60, color="#d62728", alpha=0.12)
        ax.axvline(data["warm_up_seconds"] / 60, color="#7f7f7f", linestyle=":", linewidth=1)
        for drill in data.get("drills", []):
            ax.axvline(drill["t"] / 60, color="#2ca02c", alpha=0.35, linewidth=0.8)
        ax.set_ylabel(label, fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    axes[-1].set_xlabel("minutes (shaded: S3 outages; green: restore drills; dotted: end of warm-up)")
    axes[0].set_title(f"Soak, {data['minutes']:g} min: {data['refreshes']:.0f} refreshes, "
                      f"{data['rotations']:.0f} token rotations")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


PLOTS = {"timeline": ("timeline.png", timeline), "restore_sizes": ("restore-sizes.png", restore_sizes),
         "catchup": ("catchup.png", catchup), "requests": ("requests.png", requests),
         "drills": ("drills.png", drills), "herd": ("herd.png", herd), "soak": ("soak.png", soak)}


def draw(results: dict[str, Any], out: Path) -> list[str]:
    """Every plot the results have data for; returns the file names written."""
    b = results["benchmarks"]
    written = []
    for name, (filename, plot) in PLOTS.items():
        if name in b:
            plot(b[name], out / filename)
            written.append(filename)
    return written


if __name__ == "__main__":
    print(draw(json.loads((HERE / "results.json").read_text()), HERE))
    sys.exit(0)
