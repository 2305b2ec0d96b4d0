"""Changes in a directory, told by the kernel (Linux inotify through libc), read by the event loop.

Nothing runs while nothing changes: no thread, no timer. (The token watch used watchfiles, whose
watcher thread woke every `step` (50 ms) to poll its stop event: 0.065 s of CPU per idle minute,
as much as Litestream's whole idle minute.)

One `Inotify` per process, handed to whoever watches (the token watch, the lag probe): inotify
instances are limited per user on a node (`fs.inotify.max_user_instances`, often 128), and every
sidecar of a node may run as the same user. A `Watch` exists only while someone cares: the lag
probe adds its watch on the database directory when it starts an idle wait and removes it after,
so the commits of a busy database never wake the sidecar (its WAL is written at every commit).

`Inotify.open()` returns None where inotify cannot be had (not Linux, the limit reached), and
`watch()` raises OSError when the kernel refuses a watch: the callers poll instead.
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
CHANGES = IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
GONE = IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED
EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (then `len` bytes of NUL-padded name)


def parse(data: bytes) -> list[tuple[int, int, str]]:
    """(wd, mask, name) of each event in one read (a pure function)."""
    events, offset = [], 0
    while offset + EVENT.size <= len(data):
        wd, mask, _cookie, length = EVENT.unpack_from(data, offset)
        offset += EVENT.size
        name = data[offset:offset + length].split(b"\0", 1)[0].decode(errors="replace")
        offset += length
        events.append((wd, mask, name))
    return events


class WatchGone(Exception):
    """The watched directory itself was removed or moved: this watch will not report again."""


class Watch:
    """Changes to `names` in one directory (or to anything in it), from the moment it was added."""

    def __init__(self, owner: Inotify, wd: int, directory: Path, names: frozenset[str] | None) -> None:
        self.owner, self.wd, self.directory, self.names = owner, wd, directory, names
        self.changed = False
        self.gone = False
        self._waiter: asyncio.Future[None] | None = None

    def _note(self, mask: int, name: str) -> None:
        if mask & IN_Q_OVERFLOW:
            self.changed = True  # events were lost: assume the worst
        elif mask & GONE:
            self.gone = True
        elif self.names is None or name in self.names:
            self.changed = True
        else:
            return
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def wait(self, timeout_seconds: float | None = None) -> bool:
        """True as soon as something changed since the previous wait returned (at once if it did
        meanwhile); False when `timeout_seconds` pass first. Raises WatchGone."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout_seconds is None else loop.time() + timeout_seconds
        while True:
            self.owner.read()
            if self.gone:
                raise WatchGone(f"{self.directory} was removed or moved")
            if self.changed:
                self.changed = False
                return True
            self._waiter = loop.create_future()
            try:
                left = None if deadline is None else max(0.0, deadline - loop.time())
                await asyncio.wait_for(self._waiter, left)
            except TimeoutError:
                return False
            finally:
                self._waiter = None

    def close(self) -> None:
        self.owner.remove(self)


class Inotify:
    def __init__(self, fd: int, libc: ctypes.CDLL) -> None:
        self.fd = fd
        self.libc = libc
        self.watches: dict[int, list[Watch]] = {}
        self._reading = False

    @classmethod
    def open(cls) -> Inotify | None:
        """The process's inotify instance, or None where the kernel gives none (callers poll)."""
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        except (OSError, AttributeError):
            return None
        return cls(fd, libc) if fd >= 0 else None

    def watch(self, directory: Path, names: frozenset[str] | None = None) -> Watch:
        """Start watching (OSError when the kernel refuses: no such directory, the watch limit)."""
        if self.fd < 0:
            raise OSError("inotify closed")
        wd = self.libc.inotify_add_watch(self.fd, os.fsencode(directory),
                                         CHANGES | IN_ONLYDIR | IN_DELETE_SELF | IN_MOVE_SELF)
        if wd < 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"inotify_add_watch {directory}: {os.strerror(errno)}")
        watch = Watch(self, wd, directory, names)
        self.watches.setdefault(wd, []).append(watch)
        if not self._reading:
            asyncio.get_running_loop().add_reader(self.fd, self.read)
            self._reading = True
        return watch

    def remove(self, watch: Watch) -> None:
        users = self.watches.get(watch.wd, [])
        if watch in users:
            users.remove(watch)
        if not users:
            self.watches.pop(watch.wd, None)
            if self.fd >= 0 and not watch.gone:
                self.libc.inotify_rm_watch(self.fd, watch.wd)
        if not self.watches and self._reading:
            with contextlib.suppress(RuntimeError):  # the loop is closing
                asyncio.get_running_loop().remove_reader(self.fd)
            self._reading = False

    def read(self) -> None:
        """Read every pending event and hand each to the watches of its directory."""
        while self.fd >= 0:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return
            if not data:
                return
            for wd, mask, name in parse(data):
                targets = [w for ws in self.watches.values() for w in ws] if mask & IN_Q_OVERFLOW \
                    else list(self.watches.get(wd, []))
                for watch in targets:
                    watch._note(mask, name)

    def close(self) -> None:
        if self._reading:
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop().remove_reader(self.fd)
            self._reading = False
        fd, self.fd = self.fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)
