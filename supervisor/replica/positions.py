"""The database's own position against Litestream's: has it changes Litestream has not staged?

Litestream's LTX files in the meta dir say how far it read the WAL (salts and end offset of the
newest one); the WAL index says how far the database's WAL goes. When Litestream cannot turn
frames into LTX files (meta dir full, held back, fenced, dead), its own position stops while the
database's moves on: that is what the lag and the final check must see, which LTX files alone
never show.
"""

from __future__ import annotations

from dataclasses import dataclass

from supervisor.litestream import ltx, walfile
from supervisor.litestream.config import Database
from supervisor.litestream.walguard import last_local_ltx


@dataclass(frozen=True)
class Coverage:
    """How far Litestream read the WAL: the generation and the end offset of its newest LTX file."""

    salts: tuple[int, int]
    wal_end: int
    txid: int


def coverage(db: Database) -> Coverage | None:
    last = last_local_ltx(db.meta_dir)
    if last is None:
        return None
    try:
        header = ltx.read_header(last)
    except (OSError, ValueError):
        return None
    return Coverage((header.wal_salt1, header.wal_salt2), header.wal_end, header.max_txid)


def beyond(position: walfile.DbPosition | None, covered: Coverage | None) -> bool:
    """True when the database holds committed frames past Litestream's coverage (a pure decision)."""
    if position is None or position.frames == 0:
        return False
    if covered is None:
        return True  # Litestream staged nothing yet
    if (position.salt1, position.salt2) == covered.salts:
        return position.wal_end > covered.wal_end
    return True  # the WAL restarted since Litestream's newest file and holds frames it has not read


def unstaged(db: Database) -> bool:
    return beyond(walfile.read_position(db.path), coverage(db))
