"""A database already on disk, checked against its replica instead of trusted.

A file on the volume can be *behind* the replica: a PVC rolled back to a volume snapshot, a disaster
fail-back, a node's stale local volume, a copy put back by hand. Litestream 0.5.17 started on it
sees "database behind replica" and its next snapshot makes the stale file the replica's new head:
every newer transaction is gone from the replica, and everything exits 0.

So the local position is read (Litestream's own LTX files in the meta dir, or the mark `restore`
leaves beside a database it restored and nobody replaced since) and compared with the replica's
newest transaction. Behind, or unknown while the replica holds data: refused, unless the operator
chose a way out (`--if-local-behind restore | keep`).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

LTX_NAME = re.compile(r"^(?P<min>[0-9a-f]{16})-(?P<max>[0-9a-f]{16})\.ltx$")
MARK_NAME = "supervisor-restored.json"
CHOICES = ("refuse", "restore", "keep")


@dataclass(frozen=True)
class LocalPosition:
    txid: int | None  # None: unknown
    source: str  # "litestream" (its LTX files) | "restored" (our mark) | "unknown"

    def describe(self) -> str:
        if self.txid is None:
            return "an unknown position (no Litestream state beside it, and not restored here)"
        how = "Litestream's state beside it" if self.source == "litestream" else "restored here"
        return f"txid {self.txid:016x} ({how})"


def _fingerprint(db: Path) -> dict[str, int] | None:
    try:
        st = db.stat()
    except FileNotFoundError:
        return None
    return {"inode": st.st_ino, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def litestream_txid(meta_dir: Path) -> int | None:
    """The newest transaction Litestream recorded locally (level 0), or None when it left none."""
    try:
        names = [e.name for e in (meta_dir / "ltx" / "0").iterdir()]
    except (FileNotFoundError, NotADirectoryError):
        return None
    txids = [int(m["max"], 16) for n in names if (m := LTX_NAME.match(n))]
    return max(txids) if txids else None


def mark_restored(db: Path, meta_dir: Path, txid: int, replica: str) -> None:
    """After a restore: the database at `db` is the replica's state at `txid` (until replaced)."""
    meta_dir.mkdir(parents=True, exist_ok=True)
    mark = meta_dir / MARK_NAME
    tmp = mark.with_name(mark.name + ".tmp")
    tmp.write_text(json.dumps({"txid": txid, "replica": replica, "db": _fingerprint(db)}))
    os.replace(tmp, mark)


def local_position(db: Path, meta_dir: Path) -> LocalPosition:
    txid = litestream_txid(meta_dir)
    if txid is not None:
        return LocalPosition(txid, "litestream")
    try:
        mark = json.loads((meta_dir / MARK_NAME).read_text())
        if mark.get("db") == _fingerprint(db):  # the very file restored, untouched since
            return LocalPosition(int(mark["txid"]), "restored")
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return LocalPosition(None, "unknown")


@dataclass(frozen=True)
class Verdict:
    keep: bool  # True: start on the local database
    reason: str  # why, for the log or the refusal


def judge(local: LocalPosition, replica_kind: str, replica_txid: int) -> Verdict:
    """May the app start on the local database, given what the replica holds? (pure)"""
    if replica_kind == "empty":
        return Verdict(True, "the replica is empty")
    if replica_kind == "v3":
        # A Litestream 0.3 replica has no transaction IDs to compare: the local file is the newer
        # one in every migration (0.5 starts a new history beside it).
        return Verdict(True, "the replica is a Litestream 0.3 one (positions cannot be compared)")
    if local.txid is None:
        return Verdict(False, f"it is at {local.describe()} while the replica holds txid {replica_txid:016x}")
    if local.txid < replica_txid:
        return Verdict(False, f"it is at {local.describe()}, behind the replica's txid {replica_txid:016x} "
                              f"({replica_txid - local.txid} transaction(s) newer there)")
    return Verdict(True, f"it is at {local.describe()}, the replica at txid {replica_txid:016x}")
