"""The one way Litestream is spawned, relayed and stopped (replicate daemon, -once, restore).

- spawn: a failure to exec (missing file, exec format error, ENOMEM) is LitestreamMissing,
  one line, never a hang;
- relay: every line re-emitted at its own level with its own fields;
- pids are recorded in a ProcessTable before anything else can run, so the PID-1 reaper never
  steals the exit status of a process we started.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from supervisor.core import memory
from supervisor.core.errors import LitestreamMissing

_PAIR = re.compile(r'(\w[\w.\-]*)=("(?:[^"\\]|\\.)*"|\S*)')
LEVELS = {"DEBUG": "debug", "INFO": "info", "WARN": "warning", "WARNING": "warning", "ERROR": "error"}
# Names our own log lines use: a Litestream field with one of these names is kept as "ls.<name>".
RESERVED = frozenset({"event", "level", "msg", "component", "timestamp", "db", "pid"})


def parse_line(line: str) -> tuple[str, str, dict[str, Any]]:
    """(level, message, fields) from one Litestream logfmt line; plain text stays as message.

    The first `level`, `msg` and `time` are the line's own; a later key of the same name is an
    attribute (slog prints `level=ERROR ... level=1`) and is kept, renamed, not allowed to win.
    """
    level: str | None = None
    message: str | None = None
    fields: dict[str, Any] = {}
    seen_time = False
    for key, raw in _PAIR.findall(line):
        value = raw[1:-1].replace('\\"', '"') if raw.startswith('"') else raw
        if key == "level" and level is None:
            level = value
        elif key == "msg" and message is None:
            message = value
        elif key == "time" and not seen_time:
            seen_time = True
        else:
            name = f"ls.{key}" if key in RESERVED else key
            while name in fields:
                name = "ls." + name
            fields[name] = value
    if message is None:
        return "info", line.strip(), {}
    return LEVELS.get((level or "INFO").upper(), "info"), message, fields


@dataclass
class ProcessTable:
    """Pids we spawned (and whether a spawn is under way): what the reaper must leave alone."""

    pids: set[int] = field(default_factory=set)
    spawning: int = 0

    def busy(self) -> bool:
        return self.spawning > 0


async def spawn(cmd: list[str], env: Mapping[str, str], table: ProcessTable | None = None,
                preexec: Callable[[], None] | None = None) -> asyncio.subprocess.Process:
    """Start the binary in its own session (signals reach it only through us)."""
    if table is not None:
        table.spawning += 1
    try:
        proc = await asyncio.create_subprocess_exec(
            *cmd, env=dict(env), stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True, preexec_fn=preexec)
    except OSError as e:
        raise LitestreamMissing(f"--litestream: cannot run {cmd[0]}: {e.strerror or e}") from None
    finally:
        if table is not None:
            table.spawning -= 1
    if table is not None:
        table.pids.add(proc.pid)
    memory.over()
    return proc


async def relay(stream: asyncio.StreamReader, logger: Any, context: Mapping[str, Any],
                tail: deque[str] | None = None, redact: Any = None,
                observe: Callable[[str, str, dict[str, Any]], None] | None = None) -> None:
    """Re-emit each child line through our logger at its own level, with its fields; `observe`
    sees each parsed line too (Litestream's errors become state)."""
    while True:
        raw = await stream.readline()
        if not raw:
            return
        line = raw.decode(errors="replace").rstrip()
        if redact is not None:
            line = redact(line)
        if not line:
            continue
        if tail is not None:
            tail.append(line)
        level, message, fields = parse_line(line)
        getattr(logger, level)("litestream", msg=message, **context, **fields)
        if observe is not None:
            observe(level, message, fields)


async def stop(proc: asyncio.subprocess.Process, timeout_seconds: float,
               force: asyncio.Event | None = None) -> bool:
    """One SIGTERM, wait up to the timeout (or until `force`), then SIGKILL. True if it had to kill."""
    if proc.returncode is not None:
        return False
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    waiter = asyncio.ensure_future(proc.wait())
    waits: set[asyncio.Future[Any]] = {waiter}
    forcer = asyncio.ensure_future(force.wait()) if force is not None else None
    if forcer is not None:
        waits.add(forcer)
    try:
        await asyncio.wait(waits, timeout=max(0.0, timeout_seconds), return_when=asyncio.FIRST_COMPLETED)
    finally:
        if forcer is not None:
            forcer.cancel()
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        return True
    return False


async def kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


async def group_gone(leader: asyncio.subprocess.Process, poll_seconds: float = 0.05) -> None:
    """Until the leader has exited and no process is left in its process group (its descendants,
    reaped by us as their subreaper, or by PID 1)."""
    await leader.wait()
    while True:
        try:
            os.killpg(leader.pid, 0)
        except ProcessLookupError:
            return
        except PermissionError:
            pass  # a member changed its uid: still there
        await asyncio.sleep(poll_seconds)


def become_subreaper() -> bool:
    """Orphans of our children are reparented to us (PR_SET_CHILD_SUBREAPER), not to PID 1, so the
    app's descendants are waited for, and reaped, by us."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def low_priority() -> None:
    """In a child before exec: the lowest CPU priority and the idle I/O class (a drill must not slow
    the app it protects)."""
    os.nice(19)
    number = IOPRIO_SET.get(os.uname().machine)
    if number is not None:
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            # ioprio_set(IOPRIO_WHO_PROCESS, 0 (this process), IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT)
            ctypes.CDLL(None, use_errno=True).syscall(number, 1, 0, 3 << 13)


IOPRIO_SET = {"x86_64": 251, "aarch64": 30}  # the syscall's number per architecture


def exit_code_of(returncode: int) -> int:
    """A shell's view of a process status: killed by signal N -> 128 + N."""
    return 128 - returncode if returncode < 0 else returncode
