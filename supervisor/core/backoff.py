"""The one retry policy: exponential backoff with jitter, capped. A pure function, unit-tested.

Jitter matters: after an outage every pod of every app retries, and without it they hit STS
in lockstep, all logging an error line at the same second.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    initial_seconds: float = 1.0
    max_seconds: float = 60.0
    jitter: float = 0.2  # +/- this fraction

    def delay(self, attempt: int, rand: Callable[[float, float], float] = random.uniform) -> float:
        """Seconds to wait before retry number `attempt` (1 = the first retry)."""
        # the exponent bounded: a float 2**1024 overflows, and a store can be away for days
        base = min(self.initial_seconds * 2 ** min(max(0, attempt - 1), 60), self.max_seconds)
        return base * rand(1 - self.jitter, 1 + self.jitter)
