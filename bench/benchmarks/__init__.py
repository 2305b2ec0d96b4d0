"""One module per benchmark. Each declares BENCHMARKS (what `--only NAME` runs), rows() for the
table in RESULTS.md and, where it has something to explain, notes(); some add their own options.

The order of MODULES is the order `make bench` runs them and the order of the table's rows;
NOTES_ORDER is the order of the notes under it.
"""

from __future__ import annotations

from types import ModuleType

from bench.benchmarks import (
    admission,
    catchup,
    drills,
    herd,
    idle,
    image,
    lease,
    refresh,
    requests,
    restore,
    rotation,
    rpo,
    scale,
    shutdown,
    soak,
    startup,
    timeline,
)
from bench.runner import Benchmark

MODULES: list[ModuleType] = [restore, startup, idle, refresh, rotation, rpo, scale, timeline, image, admission, lease,
                             catchup, shutdown, drills, requests, herd, soak]
NOTES_ORDER: list[ModuleType] = [restore, refresh, lease, admission, timeline, image, scale, catchup, shutdown, drills,
                                 requests, herd, soak]
# `make bench` runs them in this order (as it always has: the quick ones between the long ones)
RUN_ORDER = ["restore", "startup", "idle", "refresh", "timeline", "rotation", "rpo", "scale_1", "scale_20", "lease",
             "admission", "image", "catchup", "shutdown", "drills", "requests", "herd", "soak"]


def registry() -> dict[str, Benchmark]:
    found: dict[str, Benchmark] = {}
    for module in MODULES:
        found.update(module.BENCHMARKS)
    assert sorted(found) == sorted(RUN_ORDER), "every benchmark in RUN_ORDER, once"
    return {name: found[name] for name in RUN_ORDER}
