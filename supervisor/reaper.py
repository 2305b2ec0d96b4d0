"""Reap orphaned zombies when we run as PID 1 (no tini in the image).

Our own children are reaped by asyncio; reaping them here would steal their exit status. So
each zombie is first looked at without reaping it (WNOWAIT) and only reaped if it is not ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable

from supervisor.logs import get_logger

log = get_logger("reaper")


def reap_once(own_pids: set[int]) -> int:
    reaped = 0
    while True:
        try:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return reaped
        if info is None or info.si_pid in own_pids:
            return reaped
        with contextlib.suppress(ChildProcessError):
            os.waitpid(info.si_pid, 0)
            reaped += 1


async def reap_orphans(own_pids: Callable[[], set[int]], interval_seconds: float = 1.0) -> None:
    while True:
        count = reap_once(own_pids())
        if count:
            log.debug("reaped", count=count)
        await asyncio.sleep(interval_seconds)
