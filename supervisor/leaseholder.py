"""Holding a lease over time: acquire (waiting for another holder), renew, fence, release.

`Lease` does the async work for one database and is the only writer of its `LeaseState`;
`Lease.keep()` is the long-running part of `replicate` (renew every TTL/3, fence when renewals
stop being confirmed, end with LeaseLost when another pod took over).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from supervisor.backoff import Backoff
from supervisor.budget import Budget
from supervisor.config import Database
from supervisor.errors import LeaseConflict, LeaseHeld, LeaseLost, SupervisorError, Unreachable
from supervisor.lease import (
    Identity,
    LeaseBody,
    LeaseStore,
    Observed,
    fence_after,
    judge,
)
from supervisor.logs import get_logger
from supervisor.settings import Settings
from supervisor.state import LeaseState, State

log = get_logger("lease")
WAIT_POLL_SECONDS = 2.0
RETRY = Backoff(initial_seconds=0.5, max_seconds=5.0)


class Lease:
    def __init__(self, store: LeaseStore, me: Identity, ttl_seconds: float, state: LeaseState,
                 check_store: bool = True, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.me = me
        self.ttl = ttl_seconds
        self.state = state
        self.check_store = check_store
        self.clock = clock
        self.etag: str | None = None
        self.acquired_at = 0.0
        self.confirmed_at: float | None = None  # monotonic time a confirmed write was *sent*
        self._probe: asyncio.Future[object] | None = None

    async def _call(self, budget: Budget, fn: Callable[..., object], *args: object, **kw: object) -> object:
        return await budget.run(asyncio.to_thread(fn, *args, **kw), self.store.location)

    def _body(self, released: bool = False) -> LeaseBody:
        now = time.time()
        return LeaseBody(self.me.holder, self.me.pod_uid, self.me.instance, self.acquired_at or now, now,
                         self.ttl, released)

    async def acquire(self, budget: Budget, *, verify_later: bool = False) -> None:
        """Hold the lease, waiting (within the budget) for another holder to release it or expire.

        The store probe (supervisor/lease.py) must pass before the lease is written; with
        `verify_later` (restore, where time counts) it runs beside the looks at the lease, the lease
        is written at once and the caller awaits `verified()` before it commits anything."""
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
        self._probe = probe

    async def verified(self) -> None:
        """After acquire(verify_later=True): raises LeaseUnsupported if the store failed the probe."""
        probe, self._probe = self._probe, None
        if probe is not None:
            await probe

    async def _acquire(self, budget: Budget, started: float, sequential_probe: bool) -> None:
        waiting_logged: str | None = None
        held_by: Observed | None = None
        attempt = 0
        last: Unreachable | None = None
        while True:
            try:
                seen: Observed = await self._call(budget, self.store.read)  # type: ignore[assignment]
                verdict = judge(seen, self.me)
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
                    self.etag = await self._call(budget, self.store.write, self._body())  # type: ignore[assignment]
                else:
                    self.etag = await self._call(budget, self.store.write, self._body(),  # type: ignore[assignment]
                                                 if_match=seen.etag)
                self.confirmed_at = sent
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
        self.state.holder = self.me.holder
        self.state.waited_seconds = waited
        if verdict in ("released", "expired"):
            self.state.takeovers += 1
        previous = seen.body.describe() if seen.body is not None else None
        log.info("lease_acquired", db=self.state.db, how=verdict, previous_holder=previous,
                 waited_seconds=round(waited, 2), ttl_seconds=self.ttl, key=self.store.location)

    def _held(self, seen: Observed, budget: Budget) -> LeaseHeld:
        assert seen.body is not None
        return LeaseHeld(f"{self.store.location}: held by {seen.body.describe()}, renewed {seen.age_seconds:.0f}s "
                         f"before the last look (TTL {seen.body.ttl_seconds:g}s); gave up waiting after "
                         f"{budget.option} {budget.seconds:g}s")

    def must_fence(self) -> bool:
        """True once no renewal has been confirmed for long enough that another pod may take over."""
        return self.confirmed_at is None or self.clock() - self.confirmed_at > fence_after(self.ttl)

    async def renew(self, budget: Budget) -> None:
        """One conditional renewal; LeaseLost (naming the new holder) when someone else holds it."""
        sent = self.clock()
        try:
            self.etag = await self._call(budget, self.store.write, self._body(),  # type: ignore[assignment]
                                         if_match=self.etag)
        except LeaseConflict:
            self.state.renewals["lost"] += 1
            self.state.held = False
            self.state.lost = True
            holder = "unknown"
            try:
                seen: Observed = await self._call(budget, self.store.read)  # type: ignore[assignment]
                holder = seen.body.describe() if seen.body else "nobody (deleted)"
            except SupervisorError:
                pass
            self.state.holder = holder
            raise LeaseLost(f"{self.store.location}: lease lost to {holder}; this pod stopped uploading") from None
        except SupervisorError:
            self.state.renewals["error"] += 1
            raise
        self.confirmed_at = sent
        self.state.renewals["ok"] += 1

    async def release(self, budget: Budget) -> None:
        """Hand the lease over now (after the final position is confirmed), not after a TTL."""
        try:
            await self._call(budget, self.store.write, self._body(released=True), if_match=self.etag)
        except SupervisorError as e:
            log.warning("lease_release_failed", db=self.state.db, error=str(e),
                        detail=f"the next pod waits until the lease expires ({self.ttl:g}s)")
            return
        self.state.held = False
        log.info("lease_released", db=self.state.db)

    async def keep(self, fence: Callable[[], Awaitable[None]], unfence: Callable[[], Awaitable[None]]) -> None:
        """Renew every TTL/3 until cancelled; fence when renewals stop; LeaseLost ends it."""
        fenced = False
        failures = 0
        while True:
            delay = self.ttl / 3 if not failures else min(self.ttl / 6, RETRY.delay(failures))
            await asyncio.sleep(delay)
            try:
                await self.renew(Budget(max(1.0, self.ttl / 3), "--lease-ttl/3"))
                failures = 0
                if fenced:
                    fenced = False
                    self.state.fenced = False
                    log.info("lease_confirmed", db=self.state.db, detail="renewal succeeded again; resuming uploads")
                    await unfence()
            except LeaseLost:
                self.state.fenced = True
                await fence()  # not one more upload
                raise
            except SupervisorError as e:
                failures += 1
                log.warning("lease_renewal_failed", db=self.state.db, error=str(e), attempts=failures)
            if not fenced and self.must_fence():
                fenced = True
                self.state.fenced = True
                log.error("lease_fenced", db=self.state.db, unconfirmed_seconds=round(self.clock() - (
                    self.confirmed_at or 0), 1), detail="cannot prove this pod still holds the lease: Litestream "
                    "stopped (no upload) until a renewal succeeds")
                await fence()


def leases_for(settings: Settings, databases: list[Database], client: Callable[[Database], Any],
               state: State) -> dict[str, Lease]:
    """One Lease per database (empty with --lease off), sharing this process's identity."""
    if not settings.lease:
        log.warning("lease_disabled", detail="--lease off: nothing stops two pods from writing one replica "
                                             "(a fork: rows of one of them are lost at the next restore)")
        return {}
    me = Identity.from_env(settings.environment, settings.aws.session_name)
    if me.pod_uid is None:
        log.warning("lease_without_pod_uid", detail="POD_UID is not set (downward API metadata.uid): the "
                                                    "sidecar cannot adopt its own restore's lease and waits for "
                                                    "it to expire")
    leases = {}
    for db in databases:
        lease_state = state.leases.setdefault(db.name, LeaseState(db.name))
        store = LeaseStore(lambda db=db: client(db), db.replica)
        leases[db.name] = Lease(store, me, settings.lease_ttl_seconds, lease_state)
    return leases
