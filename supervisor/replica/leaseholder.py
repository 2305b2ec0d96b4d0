"""One database's lease: acquire it, hold it (supervisor/replica/tenure.py), release it.

`Lease.acquire` reads the lease object and writes it when free, released, expired or already
this pod's (waiting, within the budget, while another holder's is live); what one look at it
allows is `admit`, a pure rule. Once acquired, `Tenancy` (tenure.py, this class's
other half) renews, fences and unfences. The object's format and the store's calls are
supervisor/replica/lease.py; one Lease per database, supervisor/replica/leases.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from supervisor.core.budget import Budget
from supervisor.core.errors import LeaseConflict, LeaseHeld, SupervisorError, Unreachable
from supervisor.core.logs import get_logger
from supervisor.core.state import LeaseState
from supervisor.replica.lease import Identity, LeaseBody, LeaseStore, Observed, held_error, other_workload_error
from supervisor.replica.tenure import RETRY, Callback, Phase, Tenancy, Tenure, nothing

log = get_logger("lease")
WAIT_POLL_SECONDS = 2.0

StoreCheck = asyncio.Future[object] | None  # the store's conditional-write probe, when run beside acquire


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


class Lease(Tenancy):
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
        self._fence: Callback = nothing
        self._unfence: Callback = nothing

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
