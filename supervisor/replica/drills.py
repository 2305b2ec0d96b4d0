"""Restore drills in the sidecar: every --verify-interval (jittered), each database's replica is
restored into scratch space, checked, and compared with the database when it holds still; one at
a time, at the lowest CPU and I/O priority; skipped, with the reason named, when scratch space is
short. Their outcomes are metrics (and alerts): a backup that was never restored is not a backup.
"""

from __future__ import annotations

import asyncio
import glob
import random
import time

from supervisor.core.budget import Budget
from supervisor.core.errors import SupervisorError, Unreachable
from supervisor.core.logs import get_logger
from supervisor.core.memory import release_memory
from supervisor.core.state import State, VerifyState
from supervisor.litestream.config import Database
from supervisor.replica.outcome import has_data
from supervisor.replica.verify import ScratchShort, Verification, Verifier

log = get_logger("drills")
JITTER = 0.1
MAX_DRILL_SECONDS = 1800.0


def next_delay(interval_seconds: float, rand: float | None = None) -> float:
    """The interval, +/- 10% (a hundred sidecars started together do not drill together)."""
    r = random.uniform(-1, 1) if rand is None else rand  # noqa: S311 (spread, not secrecy)
    return max(1.0, interval_seconds * (1 + JITTER * r))


def record(state: VerifyState, v: Verification) -> None:
    """A drill's outcome into the state metrics read; "not compared" is a success without content."""
    state.last_seconds = v.seconds
    state.last_result, state.last_detail = v.result, v.detail
    if v.ok or v.result == "not_compared":
        state.last_success_at = time.time()
        state.compared = v.compared
        if v.compared:
            state.last_compared_at = state.last_success_at
    else:
        state.failures[v.result] += 1


class Drills:
    def __init__(self, verifier: Verifier, databases: list[Database], state: State, interval_seconds: float) -> None:
        self.verifier = verifier
        self.databases = databases
        self.state = state
        self.interval = interval_seconds
        self.lock = asyncio.Lock()  # never two at once (the final check takes it too)
        state.verify_interval_seconds = interval_seconds
        for db in databases:
            state.verify.setdefault(db.name, VerifyState(db.name))

    async def drill(self, db: Database) -> Verification | None:
        """One drill; whatever goes wrong in it is its outcome (a metric, a log line), never the
        sidecar's end: replication matters more than its check."""
        current = self.state.verify[db.name]
        if not has_data(db.path):
            # nothing written yet (an app that creates its database on first use): nothing can be
            # missing from the replica, and an empty one is no data failure
            current.last_result, current.last_detail = "skipped", "the database holds no data yet"
            log.info("drill_skipped", db=db.name, reason="no_data", detail=current.last_detail)
            return None
        async with self.lock:
            budget = Budget(min(self.interval, MAX_DRILL_SECONDS), "--verify-interval")
            try:
                outcome = await self.verifier.run(db, budget, compare=True)
            except ScratchShort as e:
                current.failures["scratch_short"] += 1
                current.last_result, current.last_detail = "skipped", str(e)
                log.warning("drill_skipped", db=db.name, reason="scratch_short", detail=str(e))
                return None
            except Exception as e:  # noqa: BLE001 (an app's schema, a file replaced mid-drill: the drill's failure)
                reason = "unreachable" if isinstance(e, Unreachable) else "error"
                detail = str(e) if isinstance(e, SupervisorError) else f"{type(e).__name__}: {e}"
                current.failures[reason] += 1
                current.last_result, current.last_detail = reason, detail
                log.warning("drill_failed", db=db.name, reason=reason, error=detail)
                return None
        record(current, outcome)
        event = "drill_verified" if outcome.ok or outcome.result == "not_compared" else "drill_failed"
        (log.info if event == "drill_verified" else log.error)(
            event, db=db.name, result=outcome.result, txid=f"{outcome.txid:016x}" if outcome.txid is not None else None,
            bytes=outcome.bytes, seconds=round(outcome.seconds, 2), compared=outcome.compared, detail=outcome.detail)
        return outcome

    def remove_leftovers(self) -> None:
        """Scratch files of drills a SIGKILL or an OOM kill cut short: ours (the name says so), and
        left in place they would leave every later drill short of space."""
        for db in self.databases:
            scratch = self.verifier.scratch_for(db)
            for leftover in scratch.glob(f".{glob.escape(db.path.name)}.verify-*"):
                leftover.unlink(missing_ok=True)
                log.warning("drill_leftover_removed", db=db.name, file=str(leftover))

    async def run(self) -> None:
        await asyncio.to_thread(self.remove_leftovers)
        while True:
            await asyncio.sleep(next_delay(self.interval))
            for db in self.databases:
                await self.drill(db)
            # a drill reads a replica's worth of pages through SQLite and frees them; glibc kept
            # them: the 2 h soak's RSS stepped 1-2 MB at drills and held there for an hour
            await asyncio.to_thread(release_memory)  # ms on a large heap: not on the loop
