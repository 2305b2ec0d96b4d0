"""A fence is a deadline, not a check after a call returns (issue 25, part 3).

The protocol (`decide`) is tested as a pure function; `keep()` with a store whose calls hang or
land late: faults of a network path that the bed reproduces too (tests/e2e/test_lease_fence.py),
measured here to the millisecond on a 3-second TTL.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter

import pytest

from supervisor.core.budget import Budget
from supervisor.core.errors import LeaseConflict, LeaseLost
from supervisor.core.state import LeaseState
from supervisor.replica.lease import Identity, LeaseBody, Observed
from supervisor.replica.leaseholder import Lease
from supervisor.replica.tenure import (
    FENCE,
    LOST,
    UNFENCE,
    Confirmed,
    Failed,
    Phase,
    Taken,
    Tenure,
    Tick,
    deadline,
    decide,
    fence_after,
    next_attempt,
    renew_timeout,
)

TTL = 30.0


@pytest.mark.parametrize("ttl", [3, 3.5, 5, 8, 10, 20, 30, 45, 60, 120, 300, 3600])
def test_a_renewal_sent_before_the_fence_is_decided_before_the_ttl(ttl: float) -> None:
    assert fence_after(ttl) + renew_timeout(ttl) < ttl
    assert renew_timeout(ttl) > 0 and fence_after(ttl) >= ttl / 2


def test_the_fence_falls_at_the_deadline_whatever_the_last_observation() -> None:
    t = Tenure(Phase.HELD, confirmed_at=100.0)
    assert deadline(t, TTL) == 100.0 + fence_after(TTL)
    assert decide(t, Tick(), 100.0 + fence_after(TTL) - 0.001, TTL) == (t, ())
    fenced, actions = decide(t, Tick(), 100.0 + fence_after(TTL), TTL)
    assert fenced.phase is Phase.FENCED and actions == (FENCE,)
    # a failure observed late fences too; a confirmation of a write sent long ago does not hold it off
    assert decide(t, Failed("slow"), 200.0, TTL)[1] == (FENCE,)
    old = decide(t, Confirmed(sent_at=99.0), 200.0, TTL)
    assert old[0].phase is Phase.FENCED and old[0].confirmed_at == 100.0


def test_a_fenced_lease_resumes_only_with_a_fresh_confirmation() -> None:
    t = Tenure(Phase.FENCED, confirmed_at=100.0, failures=4)
    assert decide(t, Tick(), 150.0, TTL) == (t, ())
    resumed, actions = decide(t, Confirmed(sent_at=149.5), 150.0, TTL)
    assert resumed == Tenure(Phase.HELD, 149.5, 0) and actions == (UNFENCE,)


def test_taken_is_lost_for_good() -> None:
    lost, actions = decide(Tenure(Phase.HELD, 100.0), Taken("prod/other"), 101.0, TTL)
    assert lost.phase is Phase.LOST and actions == (FENCE, LOST)
    assert decide(lost, Confirmed(200.0), 201.0, TTL) == (lost, ())


class SlowStore:
    """A lease store on a network path that can hang, or answer after the client gave up."""

    location = "s3://b/p.lease"

    def __init__(self) -> None:
        self.etag = "e0"
        self.body: LeaseBody | None = None
        self.hang = threading.Event()  # set: writes block until released
        self.release = threading.Event()
        self.writes = 0

    def write(self, body: LeaseBody, *, if_match: str | None = None, key: str | None = None) -> str:
        self.writes += 1
        if self.hang.is_set():
            self.release.wait(30)
        if if_match is not None and if_match != self.etag:
            raise LeaseConflict("412")
        self.etag = f"e{self.writes}"
        self.body = body
        return self.etag

    def read(self) -> Observed:
        return Observed(self.body, self.etag, 0.0)


def held_lease(store: SlowStore, ttl: float) -> Lease:
    lease = Lease(store, Identity("app-0", "prod", "uid", "inst-a", "app"), ttl, LeaseState("db"))  # type: ignore[arg-type]
    lease.tenure = Tenure(Phase.HELD, time.monotonic())
    lease.etag = store.etag
    return lease


def test_a_renewal_that_hangs_does_not_delay_the_fence() -> None:
    """On the code before: the fence was checked after the renewal returned (30.5-32.9 s for a 30 s TTL)."""
    store = SlowStore()
    ttl = 3.0

    async def run() -> float:
        lease = held_lease(store, ttl)
        confirmed = lease.tenure.confirmed_at  # type: ignore[union-attr]
        fenced_at: list[float] = []

        async def fence() -> None:
            fenced_at.append(time.monotonic())

        store.hang.set()
        keeper = asyncio.create_task(lease.keep(fence))
        while not fenced_at:
            await asyncio.sleep(0.01)
        keeper.cancel()
        store.release.set()
        return fenced_at[0] - confirmed

    after = asyncio.run(run())
    assert fence_after(ttl) <= after < fence_after(ttl) + 0.25, after


def test_a_renewal_landing_after_its_client_gave_up_is_not_a_loss() -> None:
    """The server applied a renewal the client timed out on: the next one gets 412; the object is ours,
    so its ETag is adopted and the lease renewed, not reported lost (exit 15, final upload skipped)."""
    store = SlowStore()
    ttl = 3.0

    async def run() -> Lease:
        lease = held_lease(store, ttl)
        store.hang.set()
        keeper = asyncio.create_task(lease.keep())
        while store.writes < 1:
            await asyncio.sleep(0.01)
        await asyncio.sleep(renew_timeout(ttl) + 0.2)  # the client gave up on it...
        store.hang.clear()
        store.release.set()  # ...and now the server applies it (a new ETag)
        await asyncio.sleep(ttl)
        assert not keeper.done(), keeper
        keeper.cancel()
        return lease

    lease = asyncio.run(run())
    assert lease.state.lost is False and lease.tenure.phase is Phase.HELD  # type: ignore[union-attr]
    assert lease.state.renewals["ok"] >= 1 and lease.etag == store.etag


def test_someone_elses_lease_ends_keep_with_lease_lost() -> None:
    store = SlowStore()

    async def run() -> None:
        lease = held_lease(store, 3.0)
        store.body = LeaseBody("prod/other", "uid-b", "inst-b", 0, 0, 3.0)
        store.etag = "theirs"
        fenced: list[bool] = []

        async def fence() -> None:
            fenced.append(True)

        with pytest.raises(LeaseLost, match="prod/other"):
            await asyncio.wait_for(lease.keep(fence), 5)
        assert fenced == [True] and lease.state.lost

    asyncio.run(run())


def test_only_one_renewer_at_a_time() -> None:
    """Shutdown's extra renewal waits for the keeper's renewal in flight instead of racing it."""
    store = SlowStore()
    concurrent = {"now": 0, "max": 0}
    original = store.write

    def write(body: LeaseBody, *, if_match: str | None = None, key: str | None = None) -> str:
        concurrent["now"] += 1
        concurrent["max"] = max(concurrent["max"], concurrent["now"])
        try:
            time.sleep(0.2)
            return original(body, if_match=if_match)
        finally:
            concurrent["now"] -= 1

    store.write = write  # type: ignore[method-assign]

    async def run() -> None:
        lease = held_lease(store, 3.0)
        lease.tenure = Tenure(Phase.HELD, time.monotonic() - 1.01)  # a renewal is due now
        keeper = asyncio.create_task(lease.keep())
        await asyncio.sleep(0.05)
        assert await lease.confirm(Budget(5))
        keeper.cancel()

    asyncio.run(run())
    assert concurrent["max"] == 1


def test_fifty_leases_renewed_together_after_a_return_do_not_stay_in_step() -> None:
    """Before: every renewal came exactly TTL/3 after the last, so the sidecars whose renewals a
    store's return lined up renewed in the same second every period for good (the herd: 31-39 lease
    PUTs/s every 40 s after S3 came back). Each period is now shortened by its own random part, and
    never lengthened: the fence keeps its whole margin."""
    random.seed(29)
    renewals: list[float] = []
    for _ in range(50):
        tenure = Tenure(Phase.HELD, confirmed_at=0.0)
        while tenure.confirmed_at < 600:
            due = next_attempt(tenure, Confirmed(sent_at=tenure.confirmed_at), tenure.confirmed_at, TTL)
            assert TTL / 3 * 0.8 - 1e-9 <= due - tenure.confirmed_at <= TTL / 3 + 1e-9
            tenure = Tenure(Phase.HELD, confirmed_at=due + 0.01)  # the store answers in 10 ms
            renewals.append(tenure.confirmed_at)
    per_second = Counter(int(t) for t in renewals if 120 <= t < 600)
    assert max(per_second.values()) <= 20, sorted(per_second.items())  # mean ~5.6/s; in step: 50
