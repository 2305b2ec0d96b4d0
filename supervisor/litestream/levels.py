"""Compaction levels spread per sidecar, so the sidecars on one store do not compact in one second.

Litestream 0.5.17 compacts each level at `now.Truncate(interval) + interval` (compaction_level.go):
on the wall clock, so every Litestream with the same interval compacts in the same second. With
its default levels (30 s, 5 min, 1 h) fifty sidecars on one store sent it 4.4x their mean request
rate every 30 s (bench/RESULTS.md, the herd). Each sidecar instead gets the default intervals
lengthened by its own random part of `SPREAD`: its compactions land at their own moments, and drift
apart again if two meet. Compaction only merges files already uploaded, so when it runs changes no
position and no restore. A litestream.yml that sets `levels:` is taken as written.
"""

from __future__ import annotations

import random
from typing import Any

# Litestream 0.5.17's DefaultCompactionLevels, levels 1 to 3, in seconds.
DEFAULT_INTERVALS = (30.0, 300.0, 3600.0)
SPREAD = 0.05


def spread(document: dict[str, Any], rng: random.Random | None = None) -> tuple[float, ...] | None:
    """Give `document` (a child config) levels of its own unless it names them; the intervals set,
    or None when the user's stand."""
    if document.get("levels") is not None:
        return None
    draw = (rng or random.SystemRandom()).uniform
    intervals = tuple(round(base * (1 + draw(0.0, SPREAD)), 3) for base in DEFAULT_INTERVALS)
    document["levels"] = [{"interval": f"{seconds:.3f}s"} for seconds in intervals]
    return intervals
