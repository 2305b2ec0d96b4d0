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
