"""A database on disk is checked against its replica, not trusted (issue 25, part 2): the pure
decision, and the local position read from Litestream's state or restore's mark."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from supervisor.replica import ondisk


def ltx(meta: Path, *txids: int) -> None:
    level0 = meta / "ltx" / "0"
    level0.mkdir(parents=True, exist_ok=True)
    for t in txids:
        (level0 / f"{t:016x}-{t:016x}.ltx").write_bytes(b"x")


@pytest.mark.parametrize(("local", "kind", "remote", "keep"), [
    (ondisk.LocalPosition(None, "unknown"), "empty", 0, True),  # nothing to lose in an empty replica
    (ondisk.LocalPosition(None, "unknown"), "ltx", 5, False),  # unknown while the replica holds data
    (ondisk.LocalPosition(3, "litestream"), "ltx", 5, False),  # behind: a volume snapshot put back
    (ondisk.LocalPosition(5, "litestream"), "ltx", 5, True),
    (ondisk.LocalPosition(9, "litestream"), "ltx", 5, True),  # ahead: uploads that did not happen yet
    (ondisk.LocalPosition(5, "restored"), "ltx", 5, True),
    (ondisk.LocalPosition(4, "restored"), "ltx", 5, False),
    (ondisk.LocalPosition(None, "unknown"), "v3", 0, True),  # a 0.3 replica: nothing to compare
])
def test_judge(local: ondisk.LocalPosition, kind: str, remote: int, keep: bool) -> None:
    verdict = ondisk.judge(local, kind, remote)
    assert verdict.keep is keep
    if not keep:
        assert f"{remote:016x}" in verdict.reason  # the refusal says both positions


def test_local_position_from_litestreams_state(tmp_path: Path) -> None:
    db, meta = tmp_path / "app.db", tmp_path / ".app.db-litestream"
    db.write_bytes(b"SQLite format 3\0")
    assert ondisk.local_position(db, meta) == ondisk.LocalPosition(None, "unknown")
    ltx(meta, 1, 2, 0x2a)
    assert ondisk.local_position(db, meta) == ondisk.LocalPosition(0x2a, "litestream")


def test_restores_mark_holds_only_for_the_file_it_restored(tmp_path: Path) -> None:
    db, meta = tmp_path / "app.db", tmp_path / ".app.db-litestream"
    db.write_bytes(b"SQLite format 3\0" + b"\0" * 100)
    ondisk.mark_restored(db, meta, 7, "s3://b/p/")
    assert ondisk.local_position(db, meta) == ondisk.LocalPosition(7, "restored")
    # the app writes into the WAL: the file itself is the same
    (tmp_path / "app.db-wal").write_bytes(b"frames")
    assert ondisk.local_position(db, meta).txid == 7
    # a copy put back in its place (another inode), or the file rewritten: unknown
    copy = tmp_path / "copy.db"
    shutil.copy2(db, copy)
    os.replace(copy, db)
    assert ondisk.local_position(db, meta) == ondisk.LocalPosition(None, "unknown")
    ondisk.mark_restored(db, meta, 7, "s3://b/p/")
    with open(db, "ab") as f:
        f.write(b"more")
    assert ondisk.local_position(db, meta).txid is None
    # once Litestream ran, its own state is the position
    ltx(meta, 9)
    assert ondisk.local_position(db, meta) == ondisk.LocalPosition(9, "litestream")
