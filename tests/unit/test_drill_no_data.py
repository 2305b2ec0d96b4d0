"""A drill on a database with no data yet (an empty replica) is no data failure (failed on f9608c2)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from supervisor.core.state import State
from supervisor.litestream.config import Database, Replica
from supervisor.replica import layout as replicas
from supervisor.replica import verify
from supervisor.replica.drills import Drills
from supervisor.replica.verify import Verifier


def test_a_drill_before_the_app_created_its_database_is_not_a_data_failure(monkeypatch: pytest.MonkeyPatch,
                                                                         tmp_path: Path) -> None:
    """FINDING: with no database file yet (an app that creates it on first use, a second db in the
    config not used yet) the replica is genuinely empty and nothing can be missing, yet Verifier.run
    returns "unrestorable" and the drill counts verify_failures_total{reason="unrestorable"}, which
    LitestreamVerifyFailing (critical) pages on within one --verify-interval of a fresh deploy."""

    async def empty(*_: Any) -> replicas.Layout:
        return replicas.Layout("empty", 0)

    monkeypatch.setattr(verify, "inspect_replica", empty)
    db = Database(tmp_path / "app.db", Replica("b", "app", "http://127.0.0.1:1", "us-east-1", True), tmp_path / "m")
    state = State()
    drills = Drills(Verifier(None, "litestream", Path("/x.yml"), None), [db], state, 60.0)  # type: ignore[arg-type]
    asyncio.run(drills.drill(db))
    assert state.verify[db.name].failures["unrestorable"] == 0
