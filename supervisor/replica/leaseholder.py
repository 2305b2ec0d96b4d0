"""Holding one database's lease over time: acquire, then keep it until lost, released or cancelled.

`Lease.acquire` reads the lease object and writes it when free, released, expired or already
this pod's (waiting, within the budget, while another holder's is live). `Lease.keep` only
observes and acts: one renewal at a time, each bounded by `renew_timeout`, each outcome fed to
the pure protocol in supervisor/replica/tenure.py, which decides fence / unfence / lost; a timer
fences at the deadline whatever a renewal in flight is doing. The object's format and the
store's calls are supervisor/replica/lease.py; one Lease per database, supervisor/replica/leases.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from supervisor.core.budget import Budget
from supervisor.core.errors import LeaseConflict, LeaseHeld, LeaseLost, SupervisorError, Unreachable
from supervisor.core.logs import get_logger
from supervisor.core.state import LeaseState
from supervisor.replica.lease import Identity, LeaseBody, LeaseStore, Observed, held_error, other_workload_error
from supervisor.replica.tenure import (
    FENCE,
    LOST,
    RETRY,
    UNFENCE,
    Confirmed,
    Failed,
    Observation,
    Phase,
    Taken,
    Tenure,
    Tick,
    admit,
    after_conflict,
    deadline,
    decide,
    fence_after,
    next_attempt,
    renew_timeout,
)

log = get_logger("lease")
WAIT_POLL_SECONDS = 2.0


Callback = Callable[[], Awaitable[None]]
StoreCheck = asyncio.Future[object] | None  # the store's conditional-write probe, when run beside acquire


async def _nothing() -> None:
    return None


class Lease:
    def __init__(self, store: LeaseStore, me: Identity, ttl_seconds: float, state: LeaseState,
                 check_store: bool = True, clock: Callable[[], float] = time.monotonic,
                 database: str | None = None, adopt_from: str | None = None) -> None:
        self.store = store
        self.me = me
        self.ttl = ttl_seconds
        self.state = state
        self.check_store = check_store
        self.clock = clock
        self.database = database
        self.adopt_from = adopt_from  # --adopt-replica-from: take over another workload's replica on purpose
        self.etag: str | None = None
        self.acquired_at = 0.0
        self.tenure: Tenure | None = None
        # The newest replica position any holder recorded (carried over), and where ours comes from.
        self.replica_txid = 0
        # A holder that cannot prove its workload keeps the replica's owner as it found it: a one-off
        # restore must not erase what protects the replica from another workload (exit 17).
        self.owner = me.owner
        self.position: Callable[[], int] = lambda: 0
        self._writing = asyncio.Lock()  # one renewer at a time, shutdown's extra renewal included
        self._wake = asyncio.Event()  # renew now (the replica answers again after an outage)
        self._fence: Callback = _nothing
        self._unfence: Callback = _nothing

    @property
    def confirmed_at(self) -> float | None:
        return self.tenure.confirmed_at if self.tenure else None

    async def _call(self, budget: Budget, fn: Callable[..., object], *args: object, **kw: object) -> Any:
        async with budget.limit(self.store.location):
            return await asyncio.to_thread(fn, *args, **kw)

    def _body(self, released: bool = False) -> LeaseBody:
        now = time.time()
        self.replica_txid = max(self.replica_txid, self.position())
        return LeaseBody(self.me.holder, self.me.pod_uid, self.me.instance, self.acquired_at or now, now,
                         self.ttl, released, owner=self.owner, database=self.database,
                         replica_txid=self.replica_txid)

    # -- acquire ----------------------------------------------------------------------------------

    async def acquire(self, budget: Budget, *, verify_later: bool = False) -> StoreCheck:
        """Hold the lease, waiting (within the budget) for another holder to release it or expire.

        The store probe (supervisor/replica/lease.py) must pass before the lease is written; with
        `verify_later` (restore, where time counts) it runs beside the looks at the lease, the lease
        is written at once, and the caller awaits what this returns (LeaseUnsupported if the store
        failed the probe) before it commits anything."""
        started = self.clock()
        probe: asyncio.Future[object] | None = None
        if self.check_store and verify_later:
            probe = asyncio.ensure_future(self._call(budget, self.store.check_conditional_writes, self._body()))
        try:
            await self._acquire(budget, started, sequential_probe=self.check_store and not verify_later)
        except BaseException:
            if probe is not None:
                probe.add_done_callback(lambda f: f.cancelled() or f.exception())  # reported: the other error
            raise
        return probe

    async def _acquire(self, budget: Budget, started: float, sequential_probe: bool) -> None:
        waiting_logged: str | None = None
        held_by: Observed | None = None
        last: Unreachable | None = None
        attempt = 0
        while True:
            try:
                seen: Observed = await self._call(budget, self.store.read)
                verdict = admit(seen, self.me, self.adopt_from)
                if verdict == "other":
                    assert seen.body is not None and seen.body.owner is not None
                    raise other_workload_error(self.store.location, seen.body.owner, self.me.owner)
                if seen.body is not None:
                    self.replica_txid = max(self.replica_txid, seen.body.replica_txid)
                    self.owner = self.me.owner or seen.body.owner
                if verdict == "held":
                    assert seen.body is not None
                    held_by = seen
                    self.state.holder = seen.body.describe()
                    if waiting_logged != seen.etag:
                        waiting_logged = seen.etag
                        log.warning("lease_wait", db=self.state.db, holder=seen.body.describe(),
                                    expires_in=round(seen.remaining_seconds, 1), ttl_seconds=seen.body.ttl_seconds,
                                    detail="another pod replicates this database; waiting for it to release "
                                           "the lease (after its final upload) or for the lease to expire")
                    if budget.left() <= 0.2:
                        raise self._held(seen, budget)
                    await asyncio.sleep(min(WAIT_POLL_SECONDS, seen.remaining_seconds + 0.5, budget.left()))
                    continue
                if sequential_probe and verdict != "mine":
                    # The sidecar, one call at a time (see check_conditional_writes); not when it
                    # adopts its own pod's restore lease: that restore probed this store moments ago.
                    await self._call(budget, self.store.check_conditional_writes, self._body(), parallel=False)
                    sequential_probe = False
                self.acquired_at = time.time()
                sent = self.clock()
                if verdict == "free":
                    self.etag = await self._call(budget, self.store.write, self._body())
                else:
                    self.etag = await self._call(budget, self.store.write, self._body(), if_match=seen.etag)
                self.tenure = Tenure(Phase.HELD, sent)
                break
            except LeaseConflict:
                continue  # someone wrote between our GET and PUT: look again
            except SupervisorError as e:
                if budget.spent and held_by is not None and not isinstance(e, LeaseHeld):
                    raise self._held(held_by, budget) from None  # what kept us waiting, not the last call
                if isinstance(e, LeaseHeld) or not isinstance(e, Unreachable):
                    raise
                if budget.spent:
                    raise budget.gave_up(e, last) from None
                last = e
                attempt += 1
                await asyncio.sleep(min(RETRY.delay(attempt), budget.left()))
        waited = self.clock() - started
        self.state.held = True
        self.state.fenced = False
        self.state.holder = self.me.holder
        self.state.waited_seconds = waited
        if verdict in ("released", "expired"):
            self.state.takeovers += 1
        previous = seen.body.describe() if seen.body is not None else None
        log.info("lease_acquired", db=self.state.db, how=verdict, previous_holder=previous,
                 waited_seconds=round(waited, 2), ttl_seconds=self.ttl, key=self.store.location,
                 owner=self.owner)

    def _held(self, seen: Observed, budget: Budget) -> LeaseHeld:
        return held_error(self.store.location, seen, f"{budget.option} {budget.seconds:g}s")

    # -- held -------------------------------------------------------------------------------------

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

    async def keep(self, fence: Callback = _nothing, unfence: Callback = _nothing) -> None:
        """Renew every TTL/3 from acquisition until cancelled; fence at the deadline; LeaseLost ends it."""
        assert self.tenure is not None, "acquire() first"
        self._fence, self._unfence = fence, unfence
        due = self.tenure.confirmed_at + self.ttl / 3
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

    async def release(self, budget: Budget) -> None:
        """Hand the lease over now (after the final position is confirmed), not after a TTL."""
        async with self._writing:
            try:
                await self._call(budget, self.store.write, self._body(released=True), if_match=self.etag)
            except SupervisorError as e:
                log.warning("lease_release_failed", db=self.state.db, error=str(e),
                            detail=f"the next pod waits until the lease expires ({self.ttl:g}s)")
                return
        self.state.held = False
        log.info("lease_released", db=self.state.db, replica_txid=self.replica_txid)
