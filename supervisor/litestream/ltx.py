"""The LTX file format (github.com/superfly/ltx, v0.5 as Litestream 0.5.17 writes it), as far as the
supervisor needs it: read a header, and write one kind of file, a no-op transaction.

Why write one: after Litestream was away while the app could write, the WAL may have been
checkpointed and restarted behind its back; Litestream 0.5.17 started on it takes the new WAL for
its own continuation and never uploads the checkpointed frames (rows missing from every later
restore; tests/e2e/test_faults.py). It takes a full snapshot instead when its last local LTX file
records a WAL position at the header with other salts ("wal header salt reset, snapshotting").
A zero-page LTX file at the next transaction ID, with the database size of the last one (so it
changes nothing when applied) and such a position, is that record: Litestream uploads it, then
snapshots the whole database. Nothing of the app's is touched, no lock taken.
"""

from __future__ import annotations

import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"LTX1"
HEADER_SIZE = 100
TRAILER_SIZE = 16
FLAG_NO_CHECKSUM = 1 << 1
CHECKSUM_FLAG = 1 << 63
WAL_HEADER_SIZE = 32
_HEADER = struct.Struct(">IIIQQqQqqIIQ")  # flags .. node id, after the magic


def _crc64_table() -> list[int]:
    poly = 0xD800000000000000  # CRC-64/ISO, reflected: Go's crc64.ISO
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _crc64_table()


def crc64(data: bytes, crc: int = 0) -> int:
    """Go's crc64.Update(crc, crc64.MakeTable(crc64.ISO), data). Pure Python: for small inputs."""
    crc ^= 0xFFFFFFFFFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFFFFFFFFFF


@dataclass(frozen=True)
class Header:
    flags: int
    page_size: int
    commit: int  # database size in pages after this transaction
    min_txid: int
    max_txid: int
    timestamp_ms: int
    pre_apply_checksum: int
    wal_offset: int
    wal_size: int
    wal_salt1: int
    wal_salt2: int
    node_id: int = 0

    @property
    def wal_end(self) -> int:
        """The WAL offset up to which this file holds the frames (where the next one starts)."""
        return self.wal_offset + self.wal_size

    def encode(self) -> bytes:
        return (MAGIC + _HEADER.pack(self.flags, self.page_size, self.commit, self.min_txid, self.max_txid,
                                     self.timestamp_ms, self.pre_apply_checksum, self.wal_offset, self.wal_size,
                                     self.wal_salt1, self.wal_salt2, self.node_id)).ljust(HEADER_SIZE, b"\0")

    @classmethod
    def decode(cls, data: bytes) -> Header:
        if len(data) < HEADER_SIZE or data[:4] != MAGIC:
            raise ValueError("not an LTX file (no LTX1 header)")
        return cls(*_HEADER.unpack_from(data, 4))


def read_header(path: Path) -> Header:
    with open(path, "rb") as f:
        return Header.decode(f.read(HEADER_SIZE))


def filename(txid: int) -> str:
    return f"{txid:016x}-{txid:016x}.ltx"


def noop(after: Header, current_salts: tuple[int, int], now_ms: int | None = None) -> bytes:
    """A zero-page LTX file at after.max_txid + 1 that changes nothing (same database size) and
    records a WAL position at the header with salts other than the WAL's own now."""
    txid = after.max_txid + 1
    salt1, salt2 = (current_salts[0] ^ 0xFFFFFFFF, current_salts[1] ^ 0xFFFFFFFF)
    header = Header(FLAG_NO_CHECKSUM, after.page_size, after.commit, txid, txid,
                    int(time.time() * 1000) if now_ms is None else now_ms, 0, WAL_HEADER_SIZE, 0, salt1, salt2)
    # No pages: the empty page header that ends the page block, then the page index: no entries,
    # its end marker (uvarint 0) and its size (the end marker's one byte).
    body = header.encode() + b"\0" * 6 + b"\0" + struct.pack(">Q", 1)
    post_apply = struct.pack(">Q", 0)  # no checksum tracked (HeaderFlagNoChecksum), as 0.5.x writes
    checksum = CHECKSUM_FLAG | crc64(body + post_apply)
    return body + post_apply + struct.pack(">Q", checksum)


def write_noop(level0: Path, after: Header, current_salts: tuple[int, int]) -> Path:
    """Atomically, beside Litestream's own level-0 files (it writes them the same way)."""
    target = level0 / filename(after.max_txid + 1)
    tmp = target.with_name(target.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(noop(after, current_salts))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)
    fd = os.open(level0, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return target
