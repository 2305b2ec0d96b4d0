"""Reap orphaned zombies when we run as PID 1 (no tini in the image).

Our own children are reaped by asyncio; reaping them here would steal their exit status. So
only zombies that are not in the ProcessTable are reaped, each by its own pid (found in /proc),
and nothing at all while a spawn is under way (its pid is not recorded yet).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterable
from pathlib import Path

from supervisor.core.logs import get_logger
from supervisor.litestream.process import ProcessTable

log = get_logger("reaper")


def zombie_children(proc: Path = Path("/proc"), parent: int | None = None) -> list[int]:
    """Pids of our zombie children, from /proc/<pid>/stat (state Z, ppid = us)."""
    parent = os.getpid() if parent is None else parent
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses; split after the last ')'.
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) >= 2 and fields[0] == "Z" and int(fields[1]) == parent:
            found.append(int(entry.name))
    return found


def reap_once(table: ProcessTable, zombies: Iterable[int] | None = None) -> int:
    if table.busy():
        return 0
    reaped = 0
    for pid in zombie_children() if zombies is None else zombies:
        if pid in table.pids:
            continue
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
            reaped += 1
    return reaped


async def reap_orphans(table: ProcessTable, interval_seconds: float = 1.0) -> None:
    while True:
        count = reap_once(table)
        if count:
            log.debug("reaped", count=count)
        await asyncio.sleep(interval_seconds)
