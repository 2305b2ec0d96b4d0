"""When the lag probe (supervisor/replica/lag.py) looks next: pure functions of what the last
round saw.

Every `--lag-interval` while anything is pending, each wait drawn from PACE_SPREAD of it (sidecars
on one store do not stay in step); the first after a recovery drawn from RECOVERED_SPREAD; every
half second to a second while the replica cannot be listed, less often as an outage lasts
(failing_wait); and, while nothing changes and nothing waits, twice as long after each quiet round
up to IDLE_MAX_INTERVAL_SECONDS (each of those waits drawn from PACE_SPREAD too). A change to a
database file (the kernel tells:
supervisor/core/inotify.py) ends an idle wait at once, so an idle sidecar sleeps and a busy one is
probed as before.
"""

from __future__ import annotations

import random
from collections.abc import Callable

# While the replica cannot be listed, look again every half second to a second (jittered: a hundred
# sidecars do not come back in step): its return is noticed within a second. From
# FAILING_FAST_SECONDS of outage on, the wait grows with it, up to FAILING_SLOWEST times that: a
# store that is away for long is not asked ~1.3 times a second by every sidecar, and its return
# is seen spread over up to a tenth of the outage.
FAILING_INTERVAL_SECONDS = (0.5, 1.0)
FAILING_FAST_SECONDS = 10.0
FAILING_SLOWEST = 5.0
# Nothing changed, nothing waits: the wait doubles after each quiet round, up to this (a change to
# the database ends it at once; lag.py lists the replica about every IDLE_RELIST_SECONDS anyway).
IDLE_MAX_INTERVAL_SECONDS = 60.0
# Each wait outside an outage is drawn from this share of its length: a probe that kept an exact
# period kept its phase, so sidecars that saw a store return in the same seconds listed it in the
# same seconds every --lag-interval for good (a 5 s comb of 20-25 requests/s, then 0-4, measured in
# the herd). The first wait after a recovery is drawn from RECOVERED_SPREAD of the interval: the
# phase is spread over a whole interval at once rather than drifting apart over minutes.
PACE_SPREAD = (0.8, 1.2)
RECOVERED_SPREAD = (0.5, 1.5)


def failing_wait(down_seconds: float, rand: Callable[[float, float], float] = random.uniform) -> float:
    """Seconds until the next listing while the replica has failed for `down_seconds` (pure)."""
    stretch = min(max(1.0, down_seconds / FAILING_FAST_SECONDS), FAILING_SLOWEST)
    return rand(*FAILING_INTERVAL_SECONDS) * stretch


def next_wait(interval: float, quiet_rounds: int, failing: bool, failing_wait: float) -> float:
    """Seconds until the next round (a pure function): at once-ish while the replica fails, every
    `interval` while anything changes or waits, doubling after each quiet round up to
    IDLE_MAX_INTERVAL_SECONDS (never below `interval`)."""
    if failing:
        return min(interval, failing_wait)
    if quiet_rounds <= 0:
        return interval
    return min(interval * 2 ** min(quiet_rounds, 30), max(interval, IDLE_MAX_INTERVAL_SECONDS))
