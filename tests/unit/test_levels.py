"""Each sidecar's Litestream compacts at moments of its own (supervisor/litestream/levels.py).

Litestream 0.5.17 compacts a level at `now.Truncate(interval) + interval`, Go's Truncate counting
from the zero time (1 January of year 1, UTC). With the same intervals every sidecar on a store
compacts in the same second; the herd bench measured that second at 4.4x the store's mean rate.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import select
import sqlite3
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from supervisor.core import settings
from supervisor.core.state import State
from supervisor.identity.service import CredentialService
from supervisor.litestream import levels
from supervisor.litestream.config import Database, LitestreamConfig, Replica
from tests.unit.test_token import fake_jwt

GO_ZERO_TO_UNIX_NS = 62135596800 * 10**9
GO_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m(?!s))?(?:([\d.]+)s)?$")


def go_seconds(text: str) -> float:
    match = GO_DURATION.match(text)
    assert match and text, text
    hours, minutes, seconds = match.groups()
    return int(hours or 0) * 3600 + int(minutes or 0) * 60 + float(seconds or 0)


def next_compaction_second(interval_seconds: float, unix_ns: int) -> int:
    """Litestream's NextCompactionAt(now), as a whole Unix second."""
    step = round(interval_seconds * 10**9)
    since_zero = unix_ns + GO_ZERO_TO_UNIX_NS
    return (since_zero - since_zero % step + step - GO_ZERO_TO_UNIX_NS) // 10**9


def sidecar_levels(tmp_path: Path, document: dict) -> list[float]:
    """The level-1..n intervals in the config the sidecar writes for its Litestream."""
    tmp_path.mkdir(exist_ok=True)
    token_file = tmp_path / "token"
    token_file.write_text(fake_jwt(sub="system:serviceaccount:a:b", aud="sts", exp=time.time() + 600))
    s = settings.build({}, {"AWS_ROLE_ARN": "arn:r", "AWS_WEB_IDENTITY_TOKEN_FILE": str(token_file)})
    replica = Replica("bucket", "app.db", "http://127.0.0.1:9", "us-east-1", True)
    db = Database(tmp_path / "app.db", replica, tmp_path / ".app.db-litestream")
    service = CredentialService(s, State(), LitestreamConfig(tmp_path / "litestream.yml", document, (db,)))
    try:
        written = yaml.safe_load(service.child_config(socket=True, spread_levels=True).read_text())
    finally:
        asyncio.run(service.close())
    return [go_seconds(level["interval"]) for level in written.get("levels") or []] or list(levels.DEFAULT_INTERVALS)


def test_fifty_sidecars_do_not_compact_in_one_second(tmp_path: Path) -> None:
    sidecars = [sidecar_levels(tmp_path / str(i), {"dbs": []}) for i in range(50)]
    now = time.time_ns()
    for level in range(len(levels.DEFAULT_INTERVALS)):
        busiest = Counter(next_compaction_second(s[level], now) for s in sidecars).most_common(1)[0][1]
        # uniform over 30 s, 50 sidecars: ~1.7 a second; all 50 in one with Litestream's defaults
        assert busiest <= 10, (level, busiest)
    for s in sidecars:
        pairs = zip(levels.DEFAULT_INTERVALS, s, strict=True)
        assert all(base <= mine <= base * (1 + levels.SPREAD) for base, mine in pairs)


def test_levels_litestream_yml_names_are_taken_as_written(tmp_path: Path) -> None:
    mine = {"dbs": [], "levels": [{"interval": "30s"}, {"interval": "10m"}]}
    assert sidecar_levels(tmp_path, mine) == [30.0, 600.0]
    assert levels.spread(mine) is None


@pytest.mark.parametrize("seed", [1, 2])
def test_litestream_runs_its_compaction_at_the_spread_intervals(tmp_path: Path, seed: int) -> None:
    """The real Litestream 0.5.17 reads the intervals as written (Go durations with milliseconds)."""
    from tests.bed.testbed import litestream_binary

    db = tmp_path / "app.db"
    sqlite3.connect(db).execute("PRAGMA journal_mode=WAL").close()
    document: dict = {"dbs": [{"path": str(db), "replica": {"type": "file", "path": str(tmp_path / "replica")}}]}
    intervals = levels.spread(document, random.Random(seed))
    assert intervals is not None
    config = tmp_path / "litestream.yml"
    config.write_text(yaml.safe_dump(document))
    child = subprocess.Popen([litestream_binary(), "replicate", "-no-expand-env", "-config", str(config)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env={"PATH": os.defpath, "HOME": str(tmp_path)})
    assert child.stdout is not None
    seen: dict[int, float] = {}
    deadline = time.monotonic() + 20
    try:
        while seen.keys() < {1, 2, 3} and time.monotonic() < deadline:
            if not select.select([child.stdout], [], [], 1.0)[0]:
                continue
            line = child.stdout.readline()
            if "starting compaction monitor" in line and (found := re.search(r"level=([1-8]) interval=(\S+)", line)):
                seen[int(found[1])] = go_seconds(found[2])
    finally:
        child.terminate()
        child.wait(timeout=10)
    assert seen == {i + 1: pytest.approx(v, abs=1e-6) for i, v in enumerate(intervals)}
    assert len(set(intervals) - set(levels.DEFAULT_INTERVALS)) == len(intervals)
