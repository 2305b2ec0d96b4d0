"""/livez, /readyz and /metrics, in the Kubernetes style (`?verbose` lists each check).

Liveness has no dependency checks (a MinIO outage must not restart the pod). Readiness is:
started, credentials obtained, Litestream running; lag only with --max-lag.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CONTENT_TYPE_LATEST

from supervisor.core import httpd
from supervisor.core.logs import get_logger
from supervisor.core.state import State
from supervisor.health import metrics

log = get_logger("health")
Check = tuple[str, Callable[[State], str | None]]  # (name, returns a failure reason or None)


def _started(s: State) -> str | None:
    return None if s.started else "supervisor still starting"


def _not_stopping(s: State) -> str | None:
    return "shutting down" if s.shutting_down else None


def _credentials(s: State) -> str | None:
    if s.credentials_expiration is None:
        return "no credentials yet" + (f" ({s.last_sts_error})" if s.last_sts_error else "")
    if not s.credentials_valid():
        return "credentials expired; STS refresh failing"
    return None


def _litestream(s: State) -> str | None:
    return None if s.child_running else "litestream is not running"


def _leases(s: State) -> str | None:
    for name, lease in s.leases.items():
        if lease.lost:
            return f"{name}: lease lost to {lease.holder}"
        if lease.fenced:
            return f"{name}: lease not confirmed; uploads stopped until a renewal succeeds"
        if not lease.held:
            return f"{name}: waiting for the lease" + (f" held by {lease.holder}" if lease.holder else "")
    return None


UPLOAD_ERROR_SECONDS = 60.0


def _uploads(s: State) -> str | None:
    """Litestream's own error lines of the last minute, and the changes waiting meanwhile."""
    now = time.time()
    recent = [(db, e) for db, e in s.last_litestream_error.items() if now - e.at < UPLOAD_ERROR_SECONDS]
    if not recent:
        return None
    db, error = max(recent, key=lambda item: item[1].at)
    waiting = max((d.lag_seconds for d in s.databases.values()), default=0.0)
    where = f"{db}: " if db else ""
    return (f"{where}litestream: {error.message} ({now - error.at:.0f}s ago); "
            f"{waiting:.0f}s of changes not in the replica")


def lag_check(max_lag: float) -> Check:
    def check(s: State) -> str | None:
        worst = max((d.lag_seconds for d in s.databases.values()), default=0.0)
        return f"replication lag {worst:.0f}s > {max_lag:g}s" if worst > max_lag else None

    return ("lag", check)


def loop_check(max_stall_seconds: float) -> Check:
    """The event loop turns: a heartbeat task stamps State; a stalled loop (or a dead stamper) fails."""
    def check(s: State) -> str | None:
        age = time.monotonic() - s.loop_heartbeat
        return f"event loop stalled for {age:.0f}s" if age > max_stall_seconds else None

    return ("event-loop", check)


LOOP_STALL_SECONDS = 30.0
HEARTBEAT_SECONDS = 1.0
LIVENESS: list[Check] = [loop_check(LOOP_STALL_SECONDS)]


def readiness(max_lag: float | None) -> list[Check]:
    checks: list[Check] = [("started", _started), ("shutdown", _not_stopping),
                           ("credentials", _credentials), ("lease", _leases), ("litestream", _litestream)]
    if max_lag is not None:
        checks += [lag_check(max_lag), ("uploads", _uploads)]
    return checks


# Shown by ?verbose, part of readiness only with --max-lag: a stall belongs in metrics and alerts,
# never pulls the app out of its Service by default.
INFORMATIONAL: list[Check] = [("uploads", _uploads)]


def failures(checks: list[Check], state: State) -> list[tuple[str, str | None]]:
    return [(name, check(state)) for name, check in checks]


def passes(checks: list[Check], state: State) -> bool:
    """The one definition of "ready" (or "live"): /readyz and the ready metric both use it."""
    return all(reason is None for _, reason in failures(checks, state))


def report(checks: list[Check], state: State, verbose: bool,
           informational: list[Check] | None = None) -> httpd.Response:
    lines, failed = [], False
    for name, reason in failures(checks, state):
        failed = failed or reason is not None
        lines.append(f"[+]{name} ok" if reason is None else f"[-]{name} failed: {reason}")
    counted = {name for name, _ in checks}
    for name, reason in failures([c for c in informational or [] if c[0] not in counted], state):
        lines.append(f"[+]{name} ok" if reason is None else f"[!]{name}: {reason} (not part of readiness: "
                     "--max-lag makes it so)")
    status = 503 if failed else 200
    if verbose:
        body = "\n".join(lines) + ("\ncheck failed\n" if failed else "\nok\n")
    else:
        body = "failed\n" if failed else "ok\n"
    return httpd.Response(status, body.encode())


@dataclass
class HealthServer:
    state: State
    max_lag: float | None
    server: asyncio.Server | None = None

    def __post_init__(self) -> None:
        self.readiness = readiness(self.max_lag)
        self.registry = metrics.registry_for(self.state, lambda: passes(self.readiness, self.state))
        self._heartbeat: asyncio.Task[None] | None = None

    async def _beat(self) -> None:
        while True:
            self.state.loop_heartbeat = time.monotonic()
            await asyncio.sleep(HEARTBEAT_SECONDS)

    async def handle(self, request: httpd.Request) -> httpd.Response:
        verbose = "verbose" in request.query
        if request.path == "/livez":
            return report(LIVENESS, self.state, verbose)
        if request.path == "/readyz":
            # Kubernetes style: /readyz?exclude=credentials leaves a check out (the Component's
            # readinessProbe does that, so an outage after start never pulls the app from its Service).
            excluded = set(request.query.get("exclude", []))
            unknown = excluded - {name for name, _ in self.readiness}
            if unknown:
                return httpd.Response(400, f"unknown check(s) to exclude: {', '.join(sorted(unknown))}\n".encode())
            return report([c for c in self.readiness if c[0] not in excluded], self.state, verbose, INFORMATIONAL)
        if request.path == "/metrics":
            body = await asyncio.to_thread(metrics.render, self.registry)
            return httpd.Response(200, body, CONTENT_TYPE_LATEST)
        return httpd.Response(404, b"not found: try /livez, /readyz, /metrics\n")

    async def start(self, host: str, port: int) -> int:
        self._heartbeat = asyncio.create_task(self._beat(), name="heartbeat")
        self.server = await httpd.start(self.handle, host, port)
        bound = httpd.bound_port(self.server)
        log.info("health_listening", addr=f"{host}:{bound}")
        return bound

    async def close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
