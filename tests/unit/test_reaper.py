from __future__ import annotations

import os
import time

from supervisor.litestream.process import ProcessTable
from supervisor.litestream.reaper import reap_once, zombie_children


def _zombie(code: int = 7) -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(code)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # wait until it is a zombie, without reaping it
        if open(f"/proc/{pid}/stat").read().rsplit(") ", 1)[1].startswith("Z"):  # noqa: SIM115
            return pid
        time.sleep(0.01)
    raise AssertionError("child did not exit")


def test_orphans_are_reaped_but_our_children_keep_their_status() -> None:
    ours = _zombie()
    orphans = [_zombie(), _zombie()]
    assert set(zombie_children()) >= {ours, *orphans}
    # Our own zombie first in line must not stop the reaper (issue 11, item 21).
    assert reap_once(ProcessTable(pids={ours}), zombies=[ours, *orphans]) == 2
    assert all(not os.path.exists(f"/proc/{p}") for p in orphans)
    assert os.waitpid(ours, 0)[1] >> 8 == 7  # ours is left for its owner (asyncio) to collect


def test_nothing_is_reaped_while_a_spawn_is_under_way() -> None:
    """A child spawned but not yet recorded must keep its status (issue 11, item 21)."""
    fresh = _zombie(5)
    table = ProcessTable(spawning=1)
    assert reap_once(table) == 0
    assert os.waitpid(fresh, 0)[1] >> 8 == 5
