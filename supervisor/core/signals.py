"""Signals recorded as data: the handler sets events, the command's loop does the work.

First SIGTERM/SIGINT: `stop` (graceful: final upload, verify). Second: `force` (stop at once).
"""

from __future__ import annotations

import asyncio
import signal

HANDLED = (signal.SIGTERM, signal.SIGINT)


class Signals:
    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self.force = asyncio.Event()
        self.received: list[int] = []

    def handle(self, signum: int) -> None:
        self.received.append(signum)
        if self.stop.is_set():
            self.force.set()
        self.stop.set()

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in HANDLED:
            loop.add_signal_handler(sig, self.handle, sig)

    @property
    def first(self) -> int | None:
        return self.received[0] if self.received else None
