"""The lease protocol while held, as a pure function: what was seen -> the next state, what to do.

    acquire ──> HELD ──(no confirmed renewal for fence_after)──> FENCED ──(renewal confirmed)──> HELD
                 │                                                  │
                 └──────────────(412 and someone else's)────────────┴──> LOST

`decide(tenure, observation, now, ttl)` is the whole protocol; `next_attempt` says when to renew;
`after_conflict` reads a 412. No I/O and no clock here: supervisor/replica/leaseholder.py observes
and acts, so every transition is tested without a store (tests/unit/test_leaseholder.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import Enum

from supervisor.core.backoff import Backoff
from supervisor.replica.lease import Identity, LeaseBody, Observed

RETRY = Backoff(initial_seconds=0.5, max_seconds=5.0)


def judge(seen: Observed, me: Identity) -> str:
    """free | mine | released | expired | held: what acquire may do (a pure decision)."""
    body = seen.body
    if body is None:
        return "free"
    if body.instance == me.instance or (me.pod_uid is not None and body.pod_uid == me.pod_uid):
        return "mine"
    if body.released:
        return "released"
    if seen.age_seconds > body.ttl_seconds:
        return "expired"
    return "held"


def fence_after(ttl_seconds: float) -> float:
    """Seconds after the last confirmed renewal was *sent* at which this pod must have stopped
    uploading: the TTL minus a margin for stopping Litestream and for clock rate differences. A
    timer enforces it, whatever a renewal in flight is doing."""
    return max(ttl_seconds / 2, ttl_seconds - max(5.0, ttl_seconds * 0.2))


def renew_timeout(ttl_seconds: float) -> float:
    """How long one renewal may take before it counts as failed: half the fence margin (and at
    most a renewal period), so fence_after + renew_timeout < TTL by construction: a renewal sent
    just before the fence is decided before another pod could take the lease."""
    return min(ttl_seconds / 3, (ttl_seconds - fence_after(ttl_seconds)) / 2)


def admit(seen: Observed, me: Identity, adopt_from: str | None = None) -> str:
    """One look at the lease while acquiring: `judge`'s verdict, or "other" when the replica
    belongs to another workload that this pod does not adopt on purpose (--adopt-replica-from)."""
    other = other_owner(seen.body, me)
    if other is not None and other != adopt_from:
        return "other"
    return judge(seen, me)


def other_owner(body: LeaseBody | None, me: Identity) -> str | None:
    """The other workload a replica belongs to, or None (ours, unknown on either side, or no lease)."""
    if body is None or body.owner is None or me.owner is None:
        return None
    return body.owner if body.owner != me.owner else None


class Phase(Enum):
    HELD = "held"
    FENCED = "fenced"
    LOST = "lost"


@dataclass(frozen=True)
class Tenure:
    phase: Phase
    confirmed_at: float  # monotonic time at which the newest write the server confirmed was *sent*
    failures: int = 0


@dataclass(frozen=True)
class Confirmed:
    sent_at: float


@dataclass(frozen=True)
class Failed:
    error: str
    retry_now: bool = False  # the object turned out ours (a late renewal landed): its ETag is adopted


@dataclass(frozen=True)
class Taken:
    holder: str


@dataclass(frozen=True)
class Tick:
    pass


Observation = Confirmed | Failed | Taken | Tick
FENCE, UNFENCE, LOST = "fence", "unfence", "lost"


def deadline(tenure: Tenure, ttl_seconds: float) -> float:
    """When uploads must have stopped unless a renewal is confirmed first."""
    return tenure.confirmed_at + fence_after(ttl_seconds)


def decide(tenure: Tenure, seen: Observation, now: float, ttl_seconds: float) -> tuple[Tenure, tuple[str, ...]]:
    """The protocol, one observation at a time."""
    if tenure.phase is Phase.LOST:
        return tenure, ()
    if isinstance(seen, Taken):
        return replace(tenure, phase=Phase.LOST), (FENCE, LOST)
    if isinstance(seen, Confirmed):
        tenure = replace(tenure, confirmed_at=max(tenure.confirmed_at, seen.sent_at), failures=0)
    elif isinstance(seen, Failed) and not seen.retry_now:
        tenure = replace(tenure, failures=tenure.failures + 1)
    within = now < deadline(tenure, ttl_seconds)
    if tenure.phase is Phase.HELD and not within:
        return replace(tenure, phase=Phase.FENCED), (FENCE,)
    if tenure.phase is Phase.FENCED and within:
        return replace(tenure, phase=Phase.HELD), (UNFENCE,)
    return tenure, ()


def next_attempt(tenure: Tenure, seen: Observation, now: float, ttl_seconds: float,
                 delay: Callable[[int], float] = RETRY.delay) -> float:
    """When to renew next: every third of the TTL, sooner (with backoff) after a failure."""
    if isinstance(seen, Failed) and seen.retry_now:
        return now
    if tenure.failures:
        return now + min(ttl_seconds / 6, delay(tenure.failures))
    return tenure.confirmed_at + ttl_seconds / 3


def after_conflict(seen: Observed, me: Identity) -> Observation:
    """A 412 on renewal: ours (a renewal given up on landed after all: retry with its ETag), or taken."""
    if seen.body is not None and seen.body.instance == me.instance and not seen.body.released:
        return Failed("a renewal we gave up on landed; renewing again with its ETag", retry_now=True)
    return Taken(seen.body.describe() if seen.body else "nobody (deleted)")
