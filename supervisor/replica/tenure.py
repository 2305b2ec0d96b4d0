"""Holding the lease: the protocol as a pure function (what was seen -> the next state, what to
do), and `Tenancy`, the half of `Lease` (supervisor/replica/leaseholder.py) that runs it.

    acquire ──> HELD ──(no confirmed renewal for fence_after)──> FENCED ──(renewal confirmed)──> HELD
                 │                                                  │
                 └──────────────(412 and someone else's)────────────┴──> LOST

`decide(tenure, observation, now, ttl)` is the whole protocol; `next_attempt` says when to renew;
`after_conflict` reads a 412. None of them does I/O or reads a clock, so every transition is
tested without a store (tests/unit/test_leaseholder.py). `Tenancy.keep` only observes and acts:
one renewal at a time, each bounded by `renew_timeout`, each outcome fed to `decide`; a timer
fences at the deadline whatever a renewal in flight is doing.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from enum import Enum

from supervisor.core.backoff import Backoff
from supervisor.core.budget import Budget
from supervisor.core.errors import LeaseConflict, LeaseLost, SupervisorError
from supervisor.core.logs import get_logger
from supervisor.core.state import LeaseState
from supervisor.replica.lease import Identity, LeaseBody, LeaseStore, Observed

log = get_logger("lease")
RETRY = Backoff(initial_seconds=0.5, max_seconds=5.0)
# A renewal every TTL/3 exactly kept its phase: sidecars whose renewals a store's return lined up
# (each renews as soon as it answers again) renewed in the same seconds every period for good.
RENEW_SPREAD = (0.8, 1.0)
Callback = Callable[[], Awaitable[None]]


async def nothing() -> None:
    return None


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


def renewal_period(ttl_seconds: float, rand: Callable[[float, float], float] = random.uniform) -> float:
    """Seconds from a confirmed renewal to the next: a third of the TTL, shortened by a random part of
    RENEW_SPREAD each time (never lengthened: the fence keeps its margin)."""
    return ttl_seconds / 3 * rand(*RENEW_SPREAD)


def next_attempt(tenure: Tenure, seen: Observation, now: float, ttl_seconds: float,
                 delay: Callable[[int], float] = RETRY.delay,
                 rand: Callable[[float, float], float] = random.uniform) -> float:
    """When to renew next: about every third of the TTL, sooner (with backoff) after a failure."""
    if isinstance(seen, Failed) and seen.retry_now:
        return now
    if tenure.failures:
        return now + min(ttl_seconds / 6, delay(tenure.failures))
    return tenure.confirmed_at + renewal_period(ttl_seconds, rand)


def after_conflict(seen: Observed, me: Identity) -> Observation:
    """A 412 on renewal: ours (a renewal given up on landed after all: retry with its ETag), or taken."""
    if seen.body is not None and seen.body.instance == me.instance and not seen.body.released:
        return Failed("a renewal we gave up on landed; renewing again with its ETag", retry_now=True)
    return Taken(seen.body.describe() if seen.body else "nobody (deleted)")


class Tenancy:
    """The held lease's side of `Lease` (supervisor/replica/leaseholder.py owns the parts below)."""

    store: LeaseStore
    me: Identity
    ttl: float
    state: LeaseState
    clock: Callable[[], float]
    etag: str | None
    tenure: Tenure | None
    _writing: asyncio.Lock  # one renewer at a time, shutdown's extra renewal included
    _wake: asyncio.Event  # renew now (the replica answers again after an outage)
    _fence: Callback
    _unfence: Callback
    _body: Callable[..., LeaseBody]

    def may_upload(self) -> bool:
        """Held, and the newest confirmed renewal was sent less than fence_after ago."""
        t = self.tenure
        return t is not None and t.phase is Phase.HELD and self.clock() < deadline(t, self.ttl)

    def must_fence(self) -> bool:
        return not self.may_upload()

    async def _attempt(self, timeout_seconds: float) -> Observation:
        """One conditional renewal, bounded; its outcome as an observation (never raises)."""
        async with self._writing:
            sent = self.clock()
            try:
                etag = await asyncio.wait_for(
                    asyncio.to_thread(self.store.write, self._body(), if_match=self.etag), timeout_seconds)
            except TimeoutError:
                return Failed(f"{self.store.location}: no answer within {timeout_seconds:g}s")
            except LeaseConflict:
                return await self._after_conflict(timeout_seconds)
            except SupervisorError as e:
                return Failed(str(e))
            self.etag = etag
            return Confirmed(sent)

    async def _after_conflict(self, timeout_seconds: float) -> Observation:
        """412: someone else's now, or ours (an earlier renewal we gave up on landed after all)."""
        try:
            seen: Observed = await asyncio.wait_for(asyncio.to_thread(self.store.read), timeout_seconds)
        except (TimeoutError, SupervisorError) as e:
            return Failed(f"{self.store.location}: changed (412) and could not be read: {e}")
        verdict = after_conflict(seen, self.me)
        if isinstance(verdict, Failed):
            self.etag = seen.etag
            log.info("lease_etag_adopted", db=self.state.db, detail="a renewal given up on was applied after all")
        return verdict

    async def _observe(self, seen: Observation) -> None:
        """Feed the protocol one observation; carry out what it decides."""
        assert self.tenure is not None
        before = self.tenure
        self.tenure, actions = decide(before, seen, self.clock(), self.ttl)
        if isinstance(seen, Confirmed):
            self.state.renewals["ok"] += 1
        elif isinstance(seen, Failed) and not seen.retry_now:
            self.state.renewals["error"] += 1
            log.warning("lease_renewal_failed", db=self.state.db, error=seen.error, attempts=self.tenure.failures)
        for action in actions:
            if action == FENCE:
                self.state.fenced = True
                if isinstance(seen, Taken):
                    self.state.renewals["lost"] += 1
                    self.state.held, self.state.lost, self.state.holder = False, True, seen.holder
                else:
                    log.error("lease_fenced", db=self.state.db,
                              unconfirmed_seconds=round(self.clock() - before.confirmed_at, 2),
                              fence_after_seconds=round(fence_after(self.ttl), 2),
                              detail="cannot prove this pod still holds the lease: Litestream stopped (no upload) "
                                     "until a renewal succeeds")
                await self._fence()
            elif action == UNFENCE:
                self.state.fenced = False
                log.info("lease_confirmed", db=self.state.db, detail="renewal succeeded again; resuming uploads")
                await self._unfence()
            elif action == LOST:
                raise LeaseLost(f"{self.store.location}: lease lost to {seen.holder}; "  # type: ignore[union-attr]
                                "this pod stopped uploading")

    async def keep(self, fence: Callback = nothing, unfence: Callback = nothing) -> None:
        """Renew after 80-100% of TTL/3 from acquisition until cancelled; fence at the deadline; LeaseLost ends it."""
        assert self.tenure is not None, "acquire() first"
        self._fence, self._unfence = fence, unfence
        due = self.tenure.confirmed_at + renewal_period(self.ttl)
        renewal: asyncio.Task[Observation] | None = None
        try:
            while True:
                now = self.clock()
                if renewal is None and now >= due:
                    renewal = asyncio.create_task(self._attempt(renew_timeout(self.ttl)))
                wake = deadline(self.tenure, self.ttl) if self.tenure.phase is Phase.HELD else float("inf")
                if renewal is None:
                    wake = min(wake, due)
                timeout = None if wake == float("inf") else max(0.0, wake - now)
                if renewal is not None:
                    await asyncio.wait({renewal}, timeout=timeout)
                else:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout)
                    if self._wake.is_set():
                        self._wake.clear()
                        due = self.clock()
                        continue
                if renewal is not None and renewal.done():
                    seen = renewal.result()
                    renewal = None
                    await self._observe(seen)
                    due = next_attempt(self.tenure, seen, self.clock(), self.ttl)
                else:
                    await self._observe(Tick())
        finally:
            if renewal is not None:
                renewal.cancel()

    def renew_now(self) -> None:
        """Do not wait for the next scheduled renewal (S3 is back: a fenced pod resumes at once)."""
        t = self.tenure
        if t is not None and t.phase is not Phase.LOST and (t.phase is Phase.FENCED or t.failures):
            self._wake.set()

    async def confirm(self, budget: Budget) -> bool:
        """Before one more upload (shutdown): true when the lease is provably held, after one renewal
        if the last confirmation is not recent enough to cover what follows."""
        if self.tenure is None or self.tenure.phase is Phase.LOST:
            return False
        if self.may_upload() and self.clock() + budget.left() < deadline(self.tenure, self.ttl):
            return True
        with_timeout = max(0.1, min(renew_timeout(self.ttl), budget.left()))
        seen = await self._attempt(with_timeout)
        try:
            await self._observe(seen)
        except LeaseLost:
            return False
        return self.may_upload()
