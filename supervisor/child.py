"""The `litestream replicate` child: started, relayed, restarted with backoff, stopped once.

A refresh never restarts it (credentials come from the broker). An unexpected exit is counted
and followed by a restart after 1, 2, 4 ... 30 s (reset after a minute of healthy running).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from pathlib import Path

from supervisor import litestream
from supervisor.logs import get_logger
from supervisor.state import State

log = get_logger("child")
HEALTHY_RUN_SECONDS = 60.0


class ChildSupervisor:
    def __init__(self, binary: str, config_path: Path, env: dict[str, str], state: State) -> None:
        self.cmd = [binary, "replicate", "-config", str(config_path)]
        self.env = env
        self.state = state
        self.stopping = asyncio.Event()
        self.proc: asyncio.subprocess.Process | None = None
        self.exited = asyncio.Event()
        self.last_returncode: int | None = None
        self._started = asyncio.Event()

    async def wait_started(self) -> None:
        await self._started.wait()

    async def _spawn(self) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            *self.cmd, env=self.env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # signals reach it only through us: exactly one SIGTERM
        )
        self.proc = proc
        self.exited.clear()
        self.state.child_running = True
        self.state.child_pid = proc.pid
        self.state.child_started_at = time.time()
        self._started.set()
        log.info("litestream_started", pid=proc.pid)
        return proc

    async def run(self) -> None:
        """Keep Litestream running until stop() (or cancellation)."""
        backoff = 1.0
        while not self.stopping.is_set():
            started = time.monotonic()
            proc = await self._spawn()
            assert proc.stdout is not None
            relay = asyncio.create_task(litestream.relay_output(proc.stdout, log))
            try:
                rc = await proc.wait()
                await asyncio.wait({relay}, timeout=2)
            finally:
                relay.cancel()
                self.state.child_running = False
                self.last_returncode = proc.returncode
                self.exited.set()
            if self.stopping.is_set():
                log.info("litestream_exited", returncode=rc)
                return
            if time.monotonic() - started > HEALTHY_RUN_SECONDS:
                backoff = 1.0
            self.state.child_restarts += 1
            log.error("litestream_died", returncode=rc, restart_in=backoff, restarts=self.state.child_restarts)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), backoff)
            backoff = min(backoff * 2, 30.0)

    async def stop(self, timeout_seconds: float, force: asyncio.Event) -> int | None:
        """One SIGTERM (Litestream then makes its final upload), wait, SIGKILL as a last resort."""
        self.stopping.set()
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return proc.returncode if proc else None
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        waiter = asyncio.create_task(self.exited.wait())
        forcer = asyncio.create_task(force.wait())
        try:
            done, _ = await asyncio.wait({waiter, forcer}, timeout=timeout_seconds,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            forcer.cancel()
        if waiter not in done:
            log.error("litestream_kill", reason="second signal" if force.is_set() else "shutdown timeout",
                      timeout_seconds=timeout_seconds)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await self.exited.wait()
        waiter.cancel()
        return proc.returncode
