"""A holder that does not know its workload must not erase the replica's owner.

`other_owner()` returns None when either side's owner is unknown, so a pod with no workload
(a litestream.yml with an explicit `path:` and no LITESTREAM_SUPERVISOR_WORKLOAD: a one-off
restore Job, a hand-written pod whose generated name proves nothing) takes a released or expired
lease of workload A, and its body then records `owner: null`. From then on any other workload B
takes the replica without exit 17: the protection is gone for good, silently. The owner it could
not prove itself should be carried over from the body it replaced (as replica_txid is).
"""

from __future__ import annotations

import asyncio

from supervisor.core.budget import Budget
from supervisor.core.errors import LeaseConflict, OtherWorkload
from supervisor.core.state import LeaseState
from supervisor.replica.lease import Identity, LeaseBody, Observed
from supervisor.replica.leaseholder import Lease


class MemoryStore:
    """An object with an ETag and conditional writes: what S3 gives (If-Match / If-None-Match)."""

    location = "s3://b/app.db.lease"

    def __init__(self) -> None:
        self.body: LeaseBody | None = None
        self.version = 0

    def read(self) -> Observed:
        if self.body is None:
            return Observed(None, None, 0.0)
        return Observed(self.body, str(self.version), 0.0)

    def write(self, body: LeaseBody, *, if_match: str | None = None, key: str | None = None) -> str:
        if (if_match is None and self.body is not None) or (if_match is not None and if_match != str(self.version)):
            raise LeaseConflict("412")
        self.body, self.version = body, self.version + 1
        return str(self.version)

    def check_conditional_writes(self, body: LeaseBody, parallel: bool = True) -> None:
        return None


def _lease(store: MemoryStore, pod: str, workload: str | None) -> Lease:
    me = Identity(pod, "shop", f"uid-{pod}", f"i-{pod}", workload)
    return Lease(store, me, 30.0, LeaseState("/data/app.db"), database="/data/app.db")  # type: ignore[arg-type]


async def _take_and_release(store: MemoryStore, pod: str, workload: str | None) -> None:
    lease = _lease(store, pod, workload)
    await lease.acquire(Budget(5))
    await lease.release(Budget(5))


def test_a_replica_stays_its_workloads_after_a_holder_of_unknown_workload() -> None:
    store = MemoryStore()
    asyncio.run(_take_and_release(store, "orders-0", "orders"))
    assert store.body is not None and store.body.owner == "shop/orders"
    asyncio.run(_take_and_release(store, "restore-x2x9q", None))  # knows no workload: allowed, as designed
    owner_after = store.body.owner if store.body else None
    refused = False
    try:
        asyncio.run(_take_and_release(store, "billing-0", "billing"))
    except OtherWorkload:
        refused = True
    assert refused, (f"workload shop/billing took shop/orders' replica without exit 17: a holder of unknown "
                     f"workload left owner={owner_after!r} in the lease")

