from __future__ import annotations

import os
import time

from supervisor.reaper import reap_once


def _zombie() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(7)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # wait until it is a zombie, without reaping it
        if open(f"/proc/{pid}/stat").read().split(") ", 1)[1].startswith("Z"):  # noqa: SIM115
            return pid
        time.sleep(0.01)
    raise AssertionError("child did not exit")


def test_orphans_are_reaped_but_our_children_keep_their_status() -> None:
    ours = _zombie()
    assert reap_once({ours}) == 0  # ours is left for its owner (asyncio) to collect
    assert os.waitpid(ours, 0)[1] >> 8 == 7
    orphan = _zombie()
    assert reap_once(set()) == 1
    assert not os.path.exists(f"/proc/{orphan}")
