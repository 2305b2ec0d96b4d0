"""One Lease per database of this process, all sharing the pod's identity (or none with --lease off)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from supervisor.core.logs import get_logger
from supervisor.core.settings import Settings
from supervisor.core.state import LeaseState, State
from supervisor.litestream.config import Database
from supervisor.replica.lease import Identity, LeaseStore
from supervisor.replica.leaseholder import Lease

log = get_logger("lease")


def leases_for(settings: Settings, databases: list[Database], client: Callable[[Database], Any],
               state: State, adopt_from: str | None = None) -> dict[str, Lease]:
    """One Lease per database (empty with --lease off), sharing this process's identity."""
    if not settings.lease:
        log.warning("lease_disabled", detail="--lease off: nothing stops two pods from writing one replica "
                                             "(a fork: rows of one of them are lost at the next restore)")
        return {}
    me = Identity.from_env(settings.environment, settings.aws.session_name, settings.workload)
    if me.pod_uid is None:
        log.warning("lease_without_pod_uid", detail="POD_UID is not set (downward API metadata.uid): the "
                                                    "sidecar cannot adopt its own restore's lease and waits for "
                                                    "it to expire")
    leases = {}
    for db in databases:
        lease_state = state.leases.setdefault(db.name, LeaseState(db.name))
        store = LeaseStore(lambda db=db: client(db), db.replica)
        leases[db.name] = Lease(store, me, settings.lease_ttl_seconds, lease_state, database=db.name,
                                adopt_from=adopt_from)
    return leases
