"""Measuring helpers: process RSS and CPU from /proc, an external replication-lag sampler and a
replica watch that treat the supervisor and bare Litestream alike (local LTX files, the replica's
listing and its files' headers)."""

from __future__ import annotations

import bisect
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from supervisor.litestream import ltx, walfile
from supervisor.litestream.config import Database
from supervisor.replica import layout as replicas
from supervisor.replica import positions
from supervisor.replica.lag import covered

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):  # noqa: SIM115
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()  # noqa: SIM115
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except OSError:
            pass
        time.sleep(0.02)
    raise TimeoutError(f"{what} not reached in {timeout}s")


class LagSampler:
    """Every 0.5 s: age of the oldest local LTX file the replica does not hold yet."""

    def __init__(self, s3: Any, db: Database, interval: float = 0.5) -> None:
        self.s3 = s3
        self.db = db
        self.interval = interval
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        last_key, remote = None, 0
        while not self._stop.wait(self.interval):
            try:
                pos = replicas.remote_position(self.s3, self.db.replica, last_key)
            except Exception:
                pos = None
            if pos is not None:
                last_key, remote = pos.key, max(remote, pos.txid)
            self.samples.append(replicas.lag_seconds(replicas.local_position(self.db, remote)))

    def start(self) -> LagSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def percentile(self, p: float) -> float:
        return percentile(self.samples, p)


def commit_latencies(s3: Any, db: Database, commit_times: list[float]) -> list[float]:
    """Seconds from each commit to the first level-0 LTX upload after it (S3 LastModified)."""
    prefix = f"{db.replica.path}/0000/"
    uploads = sorted(o["LastModified"].timestamp()
                     for page in s3.get_paginator("list_objects_v2").paginate(Bucket=db.replica.bucket, Prefix=prefix)
                     for o in page.get("Contents", []))
    out = []
    for t in commit_times:
        i = bisect.bisect_left(uploads, t)
        if i < len(uploads):
            out.append(uploads[i] - t)
    return out


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))], 3)


class ReplicaWatch:
    """From the replica's side, the same for the supervisor and bare Litestream: does the replica
    hold a database position yet? Lists level 0 after the last key seen and reads the newest new
    file's LTX header (a ranged GET): the WAL generation and offset that file brings the replica to."""

    def __init__(self, s3: Any, db: Database) -> None:
        self.s3 = s3
        self.db = db
        self.last_key: str | None = None
        self.coverage: positions.Coverage | None = None

    def refresh(self) -> positions.Coverage | None:
        prefix = f"{self.db.replica.prefix}0000/"
        kwargs: dict[str, Any] = {"Bucket": self.db.replica.bucket, "Prefix": prefix}
        if self.last_key:
            kwargs["StartAfter"] = self.last_key
        newest = None
        for page in self.s3.get_paginator("list_objects_v2").paginate(**kwargs):
            for obj in page.get("Contents", []):
                newest = obj["Key"]
        if newest is not None:
            head = self.s3.get_object(Bucket=self.db.replica.bucket, Key=newest, Range=f"bytes=0-{ltx.HEADER_SIZE - 1}")
            header = ltx.Header.decode(head["Body"].read())
            self.last_key = newest
            self.coverage = positions.Coverage((header.wal_salt1, header.wal_salt2), header.wal_end, header.max_txid)
        return self.coverage

    def holds(self, position: walfile.DbPosition) -> bool:
        """Every frame committed up to `position` is in a file the replica holds."""
        try:
            coverage = self.refresh()
        except Exception:  # not yet: the next poll looks again
            return False
        return coverage is not None and covered((position.salt1, position.salt2, position.wal_end, 0.0), coverage)
