"""Changes in a directory, told by the kernel (Linux inotify through libc), read by the event loop.

Nothing runs while nothing changes: no thread, no timer. (The token watch used watchfiles, whose
watcher thread wakes every `step` (50 ms) to poll its stop event: 0.065 s of CPU per idle minute,
as much as Litestream's whole idle minute.) A watch is one-shot per `wait()`: the descriptor is
read only while someone waits, so a database written a thousand times a second wakes the loop at
most once per wait, and the kernel folds identical unread events into one meanwhile.

`DirectoryWatch.open()` returns None where inotify cannot be had (not Linux, the per-user limits
of instances or watches reached): the caller polls instead, as it would have without a watch.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import struct
from pathlib import Path

IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
CHANGES = IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
GONE = IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED
EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (then `len` bytes of NUL-padded name)


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.inotify_init1  # noqa: B018 (present only where inotify is)
        return libc
    except (OSError, AttributeError):
        return None


def parse(data: bytes) -> list[tuple[int, str]]:
    """(mask, name) of each event in one read (a pure function)."""
    events, offset = [], 0
    while offset + EVENT.size <= len(data):
        _wd, mask, _cookie, length = EVENT.unpack_from(data, offset)
        offset += EVENT.size
        name = data[offset:offset + length].split(b"\0", 1)[0].decode(errors="replace")
        offset += length
        events.append((mask, name))
    return events


class WatchGone(Exception):
    """The watched directory itself was removed or moved: this watch will not report again."""


class DirectoryWatch:
    def __init__(self, fd: int, directory: Path, names: frozenset[str] | None) -> None:
        self.fd = fd
        self.directory = directory
        self.names = names  # only changes to these entries count (None: any)
        self.gone = False

    @classmethod
    def open(cls, directory: Path, names: frozenset[str] | None = None) -> DirectoryWatch | None:
        """A watch on `directory` (changes to `names` in it, or to anything), or None when the
        kernel will not give one: the caller polls instead."""
        libc = _libc()
        if libc is None:
            return None
        fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            return None
        if libc.inotify_add_watch(fd, os.fsencode(directory), CHANGES | IN_ONLYDIR | IN_DELETE_SELF
                                  | IN_MOVE_SELF) < 0:
            os.close(fd)
            return None
        return cls(fd, directory, names)

    def _drain(self) -> bool:
        """Read every pending event; True if any concerns us. Raises WatchGone."""
        changed = False
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            if not data:
                break
            for mask, name in parse(data):
                if mask & IN_Q_OVERFLOW:
                    changed = True  # events were lost: assume the worst
                elif mask & GONE:
                    self.gone = True
                elif self.names is None or name in self.names:
                    changed = True
        if self.gone:
            raise WatchGone(f"{self.directory} was removed or moved")
        return changed

    async def wait(self, timeout_seconds: float | None = None) -> bool:
        """True as soon as something changed since the previous wait returned (at once if it did
        meanwhile); False when `timeout_seconds` pass first. Raises WatchGone."""
        if self.fd < 0:
            raise WatchGone(f"{self.directory}: watch closed")
        if self._drain():
            return True
        loop = asyncio.get_running_loop()
        deadline = None if timeout_seconds is None else loop.time() + timeout_seconds
        while True:
            readable: asyncio.Future[None] = loop.create_future()
            loop.add_reader(self.fd, lambda f=readable: f.done() or f.set_result(None))
            try:
                left = None if deadline is None else max(0.0, deadline - loop.time())
                await asyncio.wait_for(readable, left)
            except TimeoutError:
                return False
            finally:
                loop.remove_reader(self.fd)
            if self._drain():
                return True

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)
