"""restore's looks at a replica (inspection.look, inspection.to_restore): the replica behind its
lease (lost its newest files) is refused exactly where restore refused it before the looks were
made one call each (a hostile review of that move asked for this table). The real store's side:
tests/e2e/test_replica_behind_lease.py."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from supervisor.core.budget import Budget
from supervisor.core.errors import ReplicaVanished
from supervisor.litestream.config import Database, Replica
from supervisor.replica import inspection, ondisk
from supervisor.replica.layout import Layout

LEASE_SAW = 0x30


def database(tmp_path: Path, local_txid: int | None) -> Database:
    db = Database(tmp_path / "app.db", Replica("b", "app.db", "http://127.0.0.1:1", "us-east-1", True),
                  tmp_path / ".app.db-litestream")
    db.path.write_bytes(b"SQLite format 3\x00")
    if local_txid is not None:
        ondisk.mark_restored(db.path, db.meta_dir, local_txid, "s3://b/app.db")
    return db


def listing(monkeypatch: pytest.MonkeyPatch, found: Layout) -> None:
    async def inspect(*_: Any) -> Layout:
        return found

    monkeypatch.setattr(inspection, "inspect_replica", inspect)


LEASE = SimpleNamespace(replica_txid=LEASE_SAW, store=SimpleNamespace(location="s3://b/app.db.lease"))
BEHIND = Layout("ltx", 3, max_txid=0x10, restorable_to=0x10)  # lost its newest files
WHOLE = Layout("ltx", 3, max_txid=0x30, restorable_to=0x30)


@pytest.mark.parametrize(("found", "local", "restoring", "keep", "vanished"), [
    (BEHIND, 0x30, True, True, False),  # the local file holds what the lease saw: it stays
    (BEHIND, 0x20, True, False, True),  # behind the lease, to be restored from a replica that lost data
    (BEHIND, 0x20, False, False, False),  # refused later as behind (LocalBehind), not as vanished
    (BEHIND, None, True, False, True),
    (WHOLE, 0x20, True, False, False),  # behind a whole replica: restoring it is the fix
    (WHOLE, 0x30, True, True, False),
])
def test_look(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, found: Layout, local: int | None,
              restoring: bool, keep: bool, vanished: bool) -> None:
    listing(monkeypatch, found)
    db = database(tmp_path, local)
    look = inspection.look(None, db, Budget(5), LEASE, restoring=restoring)  # type: ignore[arg-type]
    if vanished:
        with pytest.raises(ReplicaVanished, match="records txid 0000000000000030"):
            asyncio.run(look)
        return
    seen = asyncio.run(look)
    assert seen.found is found and seen.verdict.keep == keep


@pytest.mark.parametrize(("found", "lease", "vanished"), [
    (BEHIND, LEASE, True), (WHOLE, LEASE, False), (BEHIND, None, False),
    (Layout("empty", 0), LEASE, True),  # emptied under its lease
])
def test_to_restore(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, found: Layout, lease: Any,
                    vanished: bool) -> None:
    listing(monkeypatch, found)
    db = database(tmp_path, None)
    for known in (None, found):  # listed now, or as `look` listed it
        call = inspection.to_restore(None, db, Budget(5), lease, known)  # type: ignore[arg-type]
        if vanished:
            with pytest.raises(ReplicaVanished):
                asyncio.run(call)
        else:
            assert asyncio.run(call) is found
