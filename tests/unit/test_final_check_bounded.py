"""A drill in progress cannot hold shutdown past --shutdown-timeout (failed on f9608c2)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import apsw

from supervisor.core.budget import Budget
from supervisor.litestream.config import Database, Replica
from supervisor.replica.outcome import FinalPosition
from tests.unit.test_drill_failures import _replicator


def test_a_drill_in_progress_cannot_hold_shutdown_past_its_timeout(tmp_path: Path) -> None:
    """FINDING: final_content waits for `drills.lock` with no bound (not the budget, not a second
    signal), and shutdown does not cancel the drills task. A drill gets min(--verify-interval, 30 min):
    e.g. a legacy (non-native) sidecar whose app keeps writing through shutdown never settles, so a
    drill that began before SIGTERM keeps the lock for up to 30 minutes; shutdown then hangs past
    --shutdown-timeout until the kubelet's SIGKILL (exit code lost, lease not released)."""
    path = tmp_path / "app.db"
    con = apsw.Connection(str(path))
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE t(x)")
    con.close()
    db = Database(path, Replica("b", "app", "http://127.0.0.1:1", "us-east-1", True), tmp_path / "meta")

    class NeverCalled:
        async def run(self, *_: Any, **__: Any) -> Any:
            raise AssertionError("no drill lock yet")

    async def scenario() -> float:
        drills = SimpleNamespace(lock=asyncio.Lock())
        await drills.lock.acquire()  # a drill in progress (settling on a db that keeps changing)
        r = _replicator(db, drills, NeverCalled(), 5.0)
        started = time.monotonic()
        try:
            await asyncio.wait_for(r.final_content(FinalPosition(db.name, 1, 1, True, True),
                                                   Budget(5.0, "--shutdown-timeout")), 9.0)
        except TimeoutError:
            return 999.0
        except AssertionError:
            return time.monotonic() - started
        return time.monotonic() - started

    took = asyncio.run(scenario())
    assert took < 6.0, f"final_content still waiting on a drill after {took:.0f}s with a 5 s --shutdown-timeout"
