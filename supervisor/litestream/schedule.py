"""When each sidecar's Litestream compacts and snapshots: at moments of its own, not in the same
second as every other sidecar on the store.

Litestream 0.5.17 runs each compaction level, and the snapshot (level 9), at
`now.Truncate(interval) + interval` (compaction_level.go), counted from Go's zero time: on the
wall clock. With the same intervals every Litestream on a store compacts in the same second, and
every one snapshots its whole database (and enforces retention: LISTs and DELETEs) at 00:00 UTC.
With its default levels (30 s, 5 min, 1 h) fifty sidecars on one store sent it 4.4x their mean
request rate every 30 s (bench/RESULTS.md, the herd).

So each sidecar draws its own intervals (the same on every start of the same replica, seeded by
its bucket and path: a new draw could move the snapshot boundary past the last snapshot and upload
the whole database again at each restart), in nanoseconds (two sidecars of a thousand practically
never draw the same one; two that meet drift apart again): the default levels lengthened by up to
`SPREAD`, the daily snapshot shortened by up to `SPREAD` (up to 5% more snapshots; with the
interval under the default 24 h retention the previous snapshot outlives each new one).
Compaction and snapshots merge and copy files already uploaded: when they run moves no position
and changes no restored content. What litestream.yml sets (`levels:`, even empty or null; a
`snapshot.interval` anywhere) is taken as written.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Any

SECOND = 10**9
# Litestream 0.5.17's DefaultCompactionLevels (levels 1 to 3) and snapshot interval.
DEFAULT_LEVELS_NS = (30 * SECOND, 300 * SECOND, 3600 * SECOND)
DEFAULT_SNAPSHOT_NS = 24 * 3600 * SECOND
SPREAD = 0.05


@dataclass(frozen=True)
class Spread:
    """What was set, in seconds (None: litestream.yml's own)."""

    levels: tuple[float, ...] | None
    snapshot: float | None


def seeded(replicas: list[str]) -> random.Random:
    """The same draws on every start of the sidecar of these replicas (bucket/path)."""
    seed = hashlib.sha256("\n".join(sorted(replicas)).encode()).digest()
    return random.Random(seed)  # noqa: S311 (spread, not secrecy)


def spread(document: dict[str, Any], rng: random.Random) -> Spread:
    """Give `document` (a child config) intervals of its own where litestream.yml names none; `rng`
    is `seeded(...)` for a sidecar."""
    draw = rng.randrange
    levels = None
    if "levels" not in document:
        drawn = [base + draw(int(base * SPREAD) + 1) for base in DEFAULT_LEVELS_NS]
        document["levels"] = [{"interval": f"{ns}ns"} for ns in drawn]
        levels = tuple(ns / SECOND for ns in drawn)
    snapshot = None
    top = document.get("snapshot") or {}  # Litestream reads a null `snapshot:` as its defaults
    named = "interval" in top if isinstance(top, dict) else True
    named = named or any(isinstance(db, dict) and isinstance(db.get("snapshot"), dict)
                         and "interval" in db["snapshot"] for db in document.get("dbs") or [])
    if not named:
        ns = DEFAULT_SNAPSHOT_NS - draw(int(DEFAULT_SNAPSHOT_NS * SPREAD) + 1)
        document["snapshot"] = {**top, "interval": f"{ns}ns"}
        snapshot = ns / SECOND
    return Spread(levels, snapshot)
