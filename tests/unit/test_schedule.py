"""Each sidecar's Litestream compacts and snapshots at moments of its own (supervisor/litestream/schedule.py).

Litestream 0.5.17 compacts a level (and snapshots, level 9) at `now.Truncate(interval) + interval`,
Go's Truncate counting from the zero time (1 January of year 1, UTC). With the same intervals every
sidecar on a store compacts in the same second; the herd bench measured that second at 4.4x the
store's mean rate, and every sidecar snapshotted its whole database at 00:00 UTC.
"""

from __future__ import annotations

import asyncio
import copy
import os
import random
import re
import select
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from supervisor.core import settings
from supervisor.core.state import State
from supervisor.identity.service import CredentialService
from supervisor.litestream import schedule
from supervisor.litestream.config import Database, LitestreamConfig, Replica
from tests.unit.test_token import fake_jwt

GO_ZERO_TO_UNIX_NS = 62135596800 * 10**9
GO_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m(?!s))?(?:([\d.]+)s)?$")
DEFAULT_LEVELS = [ns / schedule.SECOND for ns in schedule.DEFAULT_LEVELS_NS]
DAY = 24 * 3600.0
NOW = 1_796_469_750 * 10**9 + 123_456_789  # 2026-12-05T10:42:30Z


def go_seconds(text: str) -> float:
    """A Go duration as written ("31434000123ns") or as Go prints it ("5m14.217000001s")."""
    if text.endswith("ns") and text[:-2].isdigit():
        return int(text[:-2]) / schedule.SECOND
    match = GO_DURATION.match(text)
    assert match and text, text
    hours, minutes, seconds = match.groups()
    return int(hours or 0) * 3600 + int(minutes or 0) * 60 + float(seconds or 0)


def next_compaction_second(interval_seconds: float, unix_ns: int) -> int:
    """Litestream's NextCompactionAt(now), as a whole Unix second."""
    step = round(interval_seconds * schedule.SECOND)
    since_zero = unix_ns + GO_ZERO_TO_UNIX_NS
    return (since_zero - since_zero % step + step - GO_ZERO_TO_UNIX_NS) // schedule.SECOND


@pytest.fixture
def service_for(tmp_path: Path) -> Iterator[Any]:
    made: list[CredentialService] = []

    def make(document: dict[str, Any], name: str = "pod") -> CredentialService:
        root = tmp_path / name
        root.mkdir(exist_ok=True)
        token_file = root / "token"
        token_file.write_text(fake_jwt(sub="system:serviceaccount:a:b", aud="sts", exp=time.time() + 600))
        s = settings.build({}, {"AWS_ROLE_ARN": "arn:r", "AWS_WEB_IDENTITY_TOKEN_FILE": str(token_file)})
        replica = Replica("bucket", f"{name}/app.db", "http://127.0.0.1:9", "us-east-1", True)
        db = Database(root / "app.db", replica, root / ".app.db-litestream")
        made.append(CredentialService(s, State(), LitestreamConfig(root / "litestream.yml", document, (db,))))
        return made[-1]
    yield make
    for service in made:
        asyncio.run(service.close())


def sidecar_intervals(service: CredentialService) -> tuple[list[float], float]:
    """The level-1..3 and snapshot intervals the sidecar's Litestream runs with."""
    written = yaml.safe_load(service.child_config(socket=True, spread=True).read_text())
    levels = [go_seconds(level["interval"]) for level in written["levels"]]
    return levels, go_seconds(written["snapshot"]["interval"])


def test_fifty_sidecars_do_not_compact_or_snapshot_in_one_second(service_for: Any) -> None:
    sidecars = [sidecar_intervals(service_for({"dbs": []}, str(i))) for i in range(50)]
    # a day of moments, fixed (seeded draws, fixed clock: the same answer every run)
    for now in range(NOW, NOW + 86400 * schedule.SECOND, 997 * schedule.SECOND):
        for level in range(len(DEFAULT_LEVELS)):
            busiest = Counter(next_compaction_second(levels[level], now) for levels, _ in sidecars)
            # uniform over 30 s, 50 sidecars: ~1.7 a second; all 50 in one second with Litestream's defaults
            assert busiest.most_common(1)[0][1] <= 8, (now, level, busiest.most_common(1))
        snapshots = Counter(next_compaction_second(snapshot, now) for _, snapshot in sidecars)
        assert snapshots.most_common(1)[0][1] <= 2  # was: all 50 at 00:00:00 UTC
    for levels, snapshot in sidecars:
        assert all(base <= mine <= base * (1 + schedule.SPREAD)
                   for base, mine in zip(DEFAULT_LEVELS, levels, strict=True))
        assert DAY * (1 - schedule.SPREAD) <= snapshot <= DAY  # never past the default 24 h retention
    assert len({levels[0] for levels, _ in sidecars}) == 50  # nanoseconds: no two alike


def test_defaults_would_put_every_sidecar_in_one_second() -> None:
    """The control: the model above sees Litestream's defaults as the herd bench saw them."""
    assert len({next_compaction_second(DEFAULT_LEVELS[0], NOW) for _ in range(50)}) == 1
    assert next_compaction_second(DAY, NOW) % 86400 == 0  # midnight UTC


@pytest.mark.parametrize(("document", "levels_named", "snapshot_named"), [
    ({"dbs": [], "levels": [{"interval": "30s"}, {"interval": "10m"}]}, True, False),
    ({"dbs": [], "levels": None}, True, False),  # Litestream reads a null `levels:` as no levels 1-3
    ({"dbs": [], "levels": []}, True, False),
    ({"dbs": [], "snapshot": {"interval": "12h"}}, False, True),
    ({"dbs": [{"path": "/d/a.db", "snapshot": {"interval": "6h"}}]}, False, True),
    ({"dbs": [], "snapshot": None}, False, False),  # Litestream reads it as its 24 h default
    ({"dbs": [], "snapshot": {"retention": "48h"}}, False, False),
])
def test_what_litestream_yml_names_is_taken_as_written(document: dict[str, Any], levels_named: bool,
                                                        snapshot_named: bool) -> None:
    before = copy.deepcopy(document)
    drawn = schedule.spread(document, random.Random(1))
    assert (drawn.levels is None) == levels_named and (drawn.snapshot is None) == snapshot_named
    if levels_named:
        assert document["levels"] == before["levels"]
    if snapshot_named:
        assert document.get("snapshot") == before.get("snapshot") and document["dbs"] == before["dbs"]
    else:
        interval = f"{round(drawn.snapshot * schedule.SECOND)}ns"
        assert document["snapshot"] == {**(before.get("snapshot") or {}), "interval": interval}


@pytest.mark.parametrize("seed", [1, 2])
def test_litestream_runs_at_the_intervals_written(tmp_path: Path, seed: int) -> None:
    """The real Litestream 0.5.17 reads the intervals as written (Go durations in nanoseconds)."""
    from tests.bed.testbed import litestream_binary

    db = tmp_path / "app.db"
    sqlite3.connect(db).execute("PRAGMA journal_mode=WAL").close()
    document: dict = {"dbs": [{"path": str(db), "replica": {"type": "file", "path": str(tmp_path / "replica")}}]}
    drawn = schedule.spread(document, random.Random(seed))
    assert drawn.levels is not None and drawn.snapshot is not None
    config = tmp_path / "litestream.yml"
    config.write_text(yaml.safe_dump(document))
    child = subprocess.Popen([litestream_binary(), "replicate", "-no-expand-env", "-config", str(config)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env={"PATH": os.defpath, "HOME": str(tmp_path)})
    assert child.stdout is not None
    seen: dict[int, float] = {}
    deadline = time.monotonic() + 20
    try:
        while seen.keys() < {1, 2, 3, 9} and time.monotonic() < deadline:
            if not select.select([child.stdout], [], [], 1.0)[0]:
                continue
            line = child.stdout.readline()
            if "starting compaction monitor" in line and (found := re.search(r"level=(\d) interval=(\S+)", line)):
                seen[int(found[1])] = go_seconds(found[2])
    finally:
        child.terminate()
        child.wait(timeout=10)
    expected = {i + 1: v for i, v in enumerate(drawn.levels)} | {9: drawn.snapshot}
    assert seen == {k: pytest.approx(v, abs=1e-9) for k, v in expected.items()}
    assert not set(drawn.levels) & set(DEFAULT_LEVELS) and drawn.snapshot != DAY


def test_a_restore_in_the_same_process_leaves_the_sidecars_config_alone(service_for: Any) -> None:
    """`replicate --exec` writes its Litestream's config, then restores (which writes one too), then
    starts Litestream: it must start with the control socket and its own intervals. It started with
    the restore's (the same file): no socket, so the WAL guard's read lock was never handed over."""
    service = service_for({"dbs": []})
    sidecar = service.child_config(socket=True, spread=True)
    restore = service.child_config()
    daemon = yaml.safe_load(sidecar.read_text())
    assert daemon["socket"]["enabled"] is True and len(daemon["levels"]) == 3 and "interval" in daemon["snapshot"]
    assert "socket" not in yaml.safe_load(restore.read_text()) and sidecar != restore


def test_a_sidecar_draws_the_same_intervals_on_every_start(service_for: Any) -> None:
    """A new draw at each start could move the snapshot boundary past the last snapshot: a whole
    database uploaded again at every restart of a rolling deploy or a crash loop."""
    first = sidecar_intervals(service_for({"dbs": []}, "web"))
    assert sidecar_intervals(service_for({"dbs": []}, "web")) == first  # restarted: same replica
    assert sidecar_intervals(service_for({"dbs": []}, "api")) != first
