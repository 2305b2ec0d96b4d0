"""restore with a store that fails the lease's conditional-write probe (run beside the first look at
the replica): no outcome is final and no file is moved before the probe passed, and its failure is
never lost behind another error nor logged as "never retrieved" (hostile review of issue 30's move).
The probe against a real store: tests/unit/test_lease.py (recorded) and tests/e2e/test_lease.py."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from supervisor.core.budget import Budget
from supervisor.core.errors import LeaseUnsupported, ReplicaError
from supervisor.core.state import LeaseState
from supervisor.replica import inspection, restore
from supervisor.replica.lease import Identity, LeaseBody
from supervisor.replica.leaseholder import Lease
from tests.unit.test_lease_owner_carried import MemoryStore

EMPTY = SimpleNamespace(kind="empty", objects=0, max_txid=0, gap=None, unexpected=None, truncated=False,
                        describe=lambda: "empty")


class Store(MemoryStore):
    def __init__(self, refuse: bool, after: float = 0.0) -> None:
        super().__init__()
        self.refuse, self.after = refuse, after

    def check_conditional_writes(self, body: LeaseBody, parallel: bool = True) -> None:
        time.sleep(self.after)
        if self.refuse:
            raise LeaseUnsupported("--lease: the S3 store ignored a conditional write (If-None-Match)")


def run(tmp: Path, monkeypatch: pytest.MonkeyPatch, store: Store, inspect: Any) -> Any:
    monkeypatch.setattr(inspection, "inspect_replica", inspect)

    async def nothing(*args: Any) -> None:
        return None

    monkeypatch.setattr(restore, "run_litestream_restore", nothing)
    db = SimpleNamespace(path=tmp / "app.db", name="app.db", meta_dir=tmp / ".app.db-litestream",
                         replica=SimpleNamespace(location="s3://b/app.db"))
    lease = Lease(store, Identity("app-0", "shop", "uid-a", "i-a", "app"), 30.0,  # type: ignore[arg-type]
                  LeaseState(str(db.path)), database=str(db.path))

    async def go() -> Any:
        try:
            return await restore.restore_one(None, "litestream", tmp / "litestream.yml", db,  # type: ignore[arg-type]
                                             Budget(10), False, lease)
        finally:
            await asyncio.sleep(0.5)  # the probe's thread ends; an unretrieved failure would be logged at gc
            gc.collect()

    return asyncio.run(go())


async def empty(*args: Any) -> Any:
    return EMPTY


def test_a_fresh_start_waits_for_the_probe_and_fails_with_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(LeaseUnsupported):
        run(tmp_path, monkeypatch, Store(refuse=True, after=0.2), empty)
    assert run(tmp_path, monkeypatch, Store(refuse=False), empty).result == "fresh"


def test_stale_files_are_not_moved_aside_for_a_store_that_fails_the_probe(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wal = tmp_path / "app.db-wal"
    wal.write_bytes(b"left by an earlier database")
    with pytest.raises(LeaseUnsupported):
        run(tmp_path, monkeypatch, Store(refuse=True, after=0.2), empty)
    assert wal.read_bytes() == b"left by an earlier database"


def test_the_probe_failure_is_the_error_when_it_came_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    async def unreachable_later(*args: Any) -> Any:
        await asyncio.sleep(0.3)
        raise ReplicaError("s3://b/app.db: the listing failed")

    with caplog.at_level(logging.ERROR, logger="asyncio"), pytest.raises(LeaseUnsupported):
        run(tmp_path, monkeypatch, Store(refuse=True), unreachable_later)
    assert "never retrieved" not in caplog.text


def test_another_error_first_leaves_no_unretrieved_probe_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    async def unreachable_now(*args: Any) -> Any:
        raise ReplicaError("s3://b/app.db: the listing failed")

    with caplog.at_level(logging.ERROR, logger="asyncio"), pytest.raises(ReplicaError):
        run(tmp_path, monkeypatch, Store(refuse=True, after=0.2), unreachable_now)
    assert "never retrieved" not in caplog.text
