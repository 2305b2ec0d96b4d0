from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from supervisor.litestream.config import Database, Replica
from supervisor.replica import layout as replica


def test_layouts() -> None:
    p = "app/"
    assert replica.classify_keys([], p).kind == "empty"
    ltx = replica.classify_keys(["app/0000/0000000000000001-0000000000000003.ltx",
                                 "app/0001/0000000000000001-0000000000000002.ltx"], p)
    assert (ltx.kind, ltx.max_txid, ltx.unexpected) == ("ltx", 3, None)
    assert replica.classify_keys(["app/generations/0123456789abcdef/snapshots/00000000.snapshot.lz4"], p).kind == "v3"
    other = replica.classify_keys(["app/backup.tar.gz", "app/notes.txt"], p)
    assert (other.kind, other.unexpected) == ("unknown", "app/backup.tar.gz")
    both = replica.classify_keys(["app/generations/0123456789abcdef/wal/x",
                                  "app/0000/0000000000000001-0000000000000001.ltx"], p)
    assert both.kind == "ltx"


def test_local_position_and_lag(tmp_path: Path) -> None:
    db = Database(tmp_path / "app.db", Replica("b", "app", None, "us-east-1", False), tmp_path / ".app.db-litestream")
    ltx = tmp_path / ".app.db-litestream" / "ltx" / "0"
    ltx.mkdir(parents=True)
    now = time.time()
    for txid, age in ((1, 30), (2, 20), (3, 10)):
        f = ltx / f"{txid:016x}-{txid:016x}.ltx"
        f.write_bytes(b"x")
        os.utime(f, (now - age, now - age))
    assert replica.local_position(db, 3) == replica.LocalPosition(3, None)
    behind = replica.local_position(db, 1)
    assert behind.txid == 3 and 19 <= replica.lag_seconds(behind, now) <= 21
    assert replica.lag_seconds(replica.local_position(db, 3), now) == 0
    missing = Database(tmp_path / "none.db", db.replica, tmp_path / ".none.db-litestream")
    assert replica.local_position(missing, 0) == replica.LocalPosition(0, None)


def test_unreadable_meta_dir_is_an_oserror_for_the_probe_to_report(tmp_path: Path) -> None:
    meta = tmp_path / "meta"
    (meta / "ltx" / "0").mkdir(parents=True)
    db = Database(tmp_path / "app.db", Replica("b", "app", None, "us-east-1", False), meta)
    (meta / "ltx").chmod(0)
    try:
        if os.getuid() == 0:  # root reads anyway: make the directory a file instead
            (meta / "ltx").chmod(0o700)
            import shutil
            shutil.rmtree(meta / "ltx" / "0")
            (meta / "ltx" / "0").write_text("not a dir")
        with pytest.raises(OSError):
            replica.local_position(db, 0)
    finally:
        (meta / "ltx").chmod(0o700)


@pytest.mark.parametrize(("spans", "end"), [
    ([], 0),
    ([(1, 1), (2, 2), (3, 3)], 3),
    ([(1, 4), (5, 5)], 5),  # a compacted level-1 file, then level 0
    ([(1, 1), (1, 8), (9, 9)], 9),  # a snapshot at level 9, level 1 from 1
    ([(7, 7)], 0),  # everything but the newest file deleted: no snapshot to start from
    ([(1, 1), (2, 2), (4, 4)], 2),  # transaction 3 missing
    ([(1, 3), (2, 6), (5, 9)], 9),  # overlapping levels
])
def test_how_far_a_replica_restores_without_a_gap(spans: list[tuple[int, int]], end: int) -> None:
    """Litestream 0.5.17 restores whatever files it finds: with all but the newest deleted it wrote a
    48 KB database that passed PRAGMA integrity_check (issue 27). The chain is checked first."""
    assert replica.chain_end(spans) == end
    keys = [f"p/0000/{lo:016x}-{hi:016x}.ltx" for lo, hi in spans]
    layout = replica.classify_keys(keys, "p/")
    if spans:
        assert (layout.gap is None) == (end == max(hi for _, hi in spans))


def test_a_listing_cut_at_its_limit_concludes_nothing_about_the_newest_transaction(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A replica of more objects than one look lists (a very long retention): the keys come in name
    order, level 0000 first, so the snapshot level and the newest files may be past the cut. Then
    no gap and no 'behind its lease' may be concluded from what was seen (a false exit 8 or 18)."""
    from supervisor.replica import inspection
    from supervisor.replica import layout as replica_module

    prefix = "app.db/"
    keys = [f"{prefix}0000/{i:016x}-{i:016x}.ltx" for i in range(5, 40)]
    keys.append(f"{prefix}0009/0000000000000001-0000000000000050.ltx")

    class Pages:
        def paginate(self, **_: object) -> list[dict[str, object]]:
            return [{"IsTruncated": True, "Contents": [{"Key": k} for k in keys[i:i + 10]]}
                    for i in range(0, len(keys), 10)]

    class Client:
        def get_paginator(self, _: str) -> Pages:
            return Pages()

    replica = Replica("b", "app.db", "http://127.0.0.1:1", "us-east-1", True)
    whole = replica_module.layout(Client(), replica)
    assert not whole.truncated and whole.gap is None and whole.max_txid == 0x50
    monkeypatch.setattr(replica_module, "MAX_LISTED", 20)
    cut = replica_module.layout(Client(), replica)
    assert cut.truncated and cut.max_txid < 0x50
    assert cut.gap is None
    assert not inspection.behind_lease(cut, 0x50)
    assert inspection.behind_lease(whole, 0x51)
