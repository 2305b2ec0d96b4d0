"""bench/plots.py draws every plot from results.json's raw values alone (what `make bench` and
`python -m bench.plots` do), and RESULTS.md links exactly the plots that were drawn."""

from __future__ import annotations

import datetime
import math
from pathlib import Path

import pytest

from bench.plots import draw
from bench.report import changes, write_markdown

PNG = b"\x89PNG\r\n\x1a\n"


def _results() -> dict:
    t = [i * 0.5 for i in range(40)]
    series = {"t": t, "lag_seconds": [1.0 if 8 <= x <= 12 else 0.2 for x in t],
              "credentials_left_seconds": [10 - (x % 5) for x in t]}
    return {"date": "2026-11-29", "machine": "x", "runs": 1, "benchmarks": {
        "timeline": {"supervisor": series, "bare": {**series, "credentials_left_seconds": [3600 - x for x in t]},
                     "rotation": 5.0, "outage": [8.0, 12.0], "seconds": 20, "credentials_note": "note",
                     "supervisor_lag_max_seconds": 1.0, "supervisor_lag_p50_seconds": 0.2,
                     "bare_lag_max_seconds": 1.0, "bare_lag_p50_seconds": 0.2},
        "restore_sizes": [{"db_bytes": mb * 1_000_000, "supervisor_seconds": mb / 50 + 0.3,
                           "bare_seconds": mb / 50, "ratio": round((mb / 50 + 0.3) / (mb / 50), 3)}
                          for mb in (25, 50, 100, 200)],
    }}


def test_every_plot_is_drawn_from_the_results_alone(tmp_path: Path) -> None:
    written = draw(_results(), tmp_path)
    assert written == ["timeline.png", "restore-sizes.png"]
    for name in written:
        data = (tmp_path / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 10_000


def test_results_md_says_what_moved_and_why(monkeypatch: pytest.MonkeyPatch) -> None:
    import bench.report as bench

    monkeypatch.setattr(bench, "WHY", {"idle RSS": "the models are cut"})
    before = {"date": "2026-11-28", "benchmarks": {"idle": {"supervisor_rss_mb": 58.4, "date": "2026-11-29"},
                                                   "startup": {"exec_to_readyz_200_seconds": 0.27},
                                                   "scale_20": {"supervisor_rss_mb": 59.0}}}
    now = {"date": "2026-11-29", "benchmarks": {"idle": {"supervisor_rss_mb": 45.8},
                                                "startup": {"exec_to_readyz_200_seconds": 0.28},
                                                "scale_20": {"supervisor_rss_mb": 47.0}}}
    lines = "\n".join(changes(before, now))
    assert "| idle RSS | 58.4 MB | 45.8 MB | the models are cut |" in lines  # moved, explained
    assert "| scale RSS, 20 dbs | 59.0 MB | 47.0 MB | not explained" in lines  # moved, no reason given
    assert "start to ready" not in lines  # within 5 %: not listed
    assert "since the previous results (2026-11-28, 2026-11-29)" in lines  # idle was rerun with --only


def test_results_md_names_the_benchmarks_rerun_on_another_day(tmp_path: Path) -> None:
    import json

    results = json.loads((Path(__file__).parents[2] / "bench" / "results.json").read_text())
    results["date"] = "2026-11-29"
    for value in results["benchmarks"].values():
        if isinstance(value, dict):
            value.pop("date", None)
    for name in ("restore", "startup"):
        results["benchmarks"][name]["date"] = "2026-12-02"
    write_markdown(results, tmp_path / "RESULTS.md", [], None)
    head = (tmp_path / "RESULTS.md").read_text().split("\n|")[0]
    assert "Measured 2026-11-29" in head and "Rerun on 2026-12-02 (`--only restore,startup`)" in head


def test_results_md_links_the_plots(tmp_path: Path) -> None:
    import json

    results = json.loads((Path(__file__).parents[2] / "bench" / "results.json").read_text())
    write_markdown(results, tmp_path / "RESULTS.md", ["timeline.png"], None)
    text = (tmp_path / "RESULTS.md").read_text()
    assert "](timeline.png)" in text and "restore-sizes.png" not in text


def test_restore_phases_come_from_the_restores_own_log() -> None:
    import json

    from bench.benchmarks.restore import restore_phases

    lines = [json.dumps({"event": e, "timestamp": f"2026-11-29T10:00:{s}Z", **extra}) for e, s, extra in (
        ("credentials_obtained", "00.250000", {"sts_seconds": 0.055}),
        ("lease_acquired", "00.270000", {}),
        ("restored", "02.200000", {"litestream_seconds": 1.9, "check_seconds": 0.04}),
    )]
    started = datetime.datetime(2026, 11, 29, 10, 0, tzinfo=datetime.UTC).timestamp()
    phases = restore_phases("litestream: a line that is not JSON\n" + "\n".join(lines), started)
    assert phases == pytest.approx({"exec_to_credentials": 0.25, "sts_exchange": 0.055, "credentials_to_lease": 0.02,
                                    "litestream": 1.9, "integrity_check": 0.04})


def test_catching_up_after_the_outage_is_read_from_the_lag_samples() -> None:
    from bench.benchmarks.timeline import caught_up_after_outage

    t = [i * 0.5 for i in range(60)]
    lag = [0.0 if x < 10 else (x - 10 if x < 24 else 0.1) for x in t]  # outage 10-20 s, back at 24 s
    assert caught_up_after_outage({"t": t, "lag_seconds": lag}, 20.0) == 4.0
    assert math.isnan(caught_up_after_outage({"t": t, "lag_seconds": [5.0] * 60}, 20.0))  # never caught up


def _issue29_results() -> dict:
    """The benchmarks issues 26, 27 and 29 added, with made-up raw values of the shape they record."""
    runs = {"runs_seconds": [0.4, 0.5, 0.6], "median_seconds": 0.5, "max_seconds": 0.6, "min_seconds": 0.4,
            "rows_lost": 0, "exit_codes": [0, 0, 0], "litestream_starts": [1, 1, 1], "within_goal": 3}
    phase = {"supervisor_per_hour": 420.0, "its_litestream_per_hour": 720.0, "bare_litestream_per_hour": 700.0,
             "supervisor_by_kind": {"supervisor PUT lease": 360.0, "supervisor LIST level-0": 60.0},
             "probe": {"listings": 1, "median_answer_bytes": 600, "max_answer_bytes": 600}}
    size = {"db_bytes": 100_000_000, "drill_seconds": 1.0, "drill_cpu_seconds": 1.2,
            "drill_peak_scratch_bytes": 100_000_000, "drill_requests": 4, "verify_seconds": 1.1,
            "verify_cpu_seconds": 1.3, "verify_peak_scratch_bytes": 100_000_000, "shutdown_exit_code": 0,
            "shutdown_seconds": 2.0, "final_check_seconds": 1.0, "final_check_share": 0.5}
    t = list(range(300))
    peak = {"peak_per_second": 90, "ratio_to_steady": 1.8, "peak_at_seconds_after": 1, "ratio_to_steady_peak": 0.9,
            "peak_without_compaction_per_second": 80, "ratio_without_compaction_to_steady": 1.6}
    samples = [{"t": i * 5.0, "rss_mb": 44.0, "litestream_rss_mb": 40.0, "fds": 20, "litestream_fds": 15,
                "threads": 2, "cpu_seconds": i * 0.1, "litestream_cpu_seconds": i * 0.1} for i in range(40)]
    return {"catchup": {"outage_seconds": 10, "runs": 3, "goal_seconds": 3.0, "supervisor": runs,
                        "bare": {**runs, "runs_seconds": [3.3, 9.0, 49.6], "median_seconds": 9.0}, "note": "n"},
            "shutdown": {"runs": 5, "supervisor": {"median_seconds": 0.1, "max_seconds": 0.2, "exit_codes": [0],
                                                   "final_check_median_seconds": 0.03},
                         "bare": {"median_seconds": 0.01, "max_seconds": 0.02, "exit_codes": [0]}, "note": "n"},
            "requests": {"phases": {"idle": phase, "steady": phase, "padded": phase}, "note": "n",
                         "per_pod_per_second": {"idle": 0.3, "steady": 1.4},
                         "per_1000_pods_per_second": {"idle": 300.0, "steady": 1400.0}},
            "drills": {"sizes": [size, {**size, "db_bytes": 230_000_000}], "drill_seconds_per_100mb": 1.0,
                       "drill_cpu_seconds_per_100mb": 1.2, "drill_peak_scratch_per_db_byte": 1.0, "note": "n"},
            "herd": {"sidecars": 50, "default_ttl_sidecars": 5, "started_in_seconds": 20, "steady_seconds": 60,
                     "marks": {"steady": 0, "s3_cut": 60, "s3_back": 90, "sts_cut": 165, "sts_back": 210, "end": 300},
                     "steady_requests_per_second": 50.0, "steady_requests_per_second_per_sidecar": 1.0,
                     "steady_peak_per_second": 100, "steady_peak_without_compaction_per_second": 60,
                     "steady_by_who_per_second": {"supervisor": 10.0, "litestream": 40.0},
                     "probe_latency_p50_ms": 3.0, "probe_latency_p99_ms": 9.0, "steady_errors": 0,
                     "after_s3_outage": peak, "after_sts_outage": peak, "caught_up_after_s3_seconds": 4.0,
                     "caught_up_after_sts_seconds": 20.0, "litestream_restarts_long_ttl": 0, "rows_lost": 0,
                     "rows_committed": 1000, "exit_0": 50, "litestream_fences_default_ttl": 5,
                     "litestream_restarts_default_ttl": 5, "supervisor_rss_mb_median": 44.0,
                     "litestream_rss_mb_median": 40.0,
                     "series": {"t": t, "total": [50] * 300, "supervisor": [10] * 300, "litestream": [40] * 300},
                     "lag_series": {"t": t[::2], "behind": [0] * 150}},
            "soak": {"minutes": 3, "warm_up_seconds": 36, "outages": [[60, 75], [120, 135]], "samples": samples,
                     "refreshes": 36, "rotations": 6, "rss_mb_per_1000_refreshes": 0.1, "rss_drift_mb": 0.0,
                     "fds_after_warm_up": [20, 20], "fds_drift": 0, "threads_after_warm_up": [2, 3],
                     "threads_drift": 0, "cpu_seconds_per_minute": 1.2, "litestream_cpu_seconds_per_minute": 1.2,
                     "litestream_rss_drift_mb": 0.0, "litestream_restarts": 0, "rows_lost": 0,
                     "rows_committed": 1000, "exit_code": 0}}


def test_the_new_benchmarks_plot_and_tabulate_from_their_raw_values(tmp_path: Path) -> None:
    import json

    results = json.loads((Path(__file__).parents[2] / "bench" / "results.json").read_text())
    results["benchmarks"].update(_issue29_results())
    written = draw({"benchmarks": _issue29_results()}, tmp_path)
    assert written == ["catchup.png", "requests.png", "drills.png", "herd.png", "soak.png"]
    for name in written:
        assert (tmp_path / name).read_bytes().startswith(PNG)
    write_markdown(results, tmp_path / "RESULTS.md", written, None)
    text = (tmp_path / "RESULTS.md").read_text()
    for phrase in ("catch-up after a 10 s S3 outage", "requests per database-hour, idle", "restore drill per 100 MB",
                   "50 sidecars on one store", "soak (3 min", "SIGTERM -> exit, under a writer", "](herd.png)"):
        assert phrase in text, phrase
