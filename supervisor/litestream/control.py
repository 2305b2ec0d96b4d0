"""Litestream 0.5.17's control socket: HTTP on a Unix socket in the supervisor's private directory.

`POST /sync {"path"}` turns the WAL into LTX files now (the final staging while the daemon still
holds its read lock; a drill's still moment); `POST /stop` and `POST /start` close and reopen one
database (a fresh uploader after an outage); `GET /list` says which are open and when each last
synced to the replica. The socket is never on the network: a 0700 directory, the socket 0600.

Never with a timeout, and never `wait`: Litestream 0.5.17 takes its long-running read transaction
(what keeps SQLite from checkpointing frames it has not read) with the context of whatever sync
initialises the database or checkpoints it. A request's `timeout` (implied by `wait`) makes that
the request's context, which Go cancels when the request ends, rolling the read lock back: SQLite
may then checkpoint and restart the WAL under a running Litestream, and rows go missing from the
replica while positions agree (found on the bed by the final content check; a request without a
timeout runs on the server's own context). Time limits are the client's here; uploads are
confirmed from the replica's side.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor.core.errors import SupervisorError

# sockaddr_un.sun_path is 108 bytes on Linux, with the terminating NUL.
MAX_SOCKET_PATH = 107


class ControlError(SupervisorError):
    """The control socket did not answer, or Litestream refused (its message, one line)."""


class ControlRefused(ControlError):
    """Litestream answered, with an error: the request ran to its end on its side."""


@dataclass(frozen=True)
class SyncResult:
    status: str  # synced | synced_local | no_change
    txid: int  # the newest local transaction after the sync
    replicated_txid: int  # the newest transaction the replica holds, as Litestream knows it

    @property
    def caught_up(self) -> bool:
        return self.replicated_txid >= self.txid


def socket_config(path: Path) -> dict[str, Any]:
    """The `socket:` section the child runs with (a user's own is replaced: we drive it)."""
    return {"enabled": True, "path": str(path), "permissions": 0o600}


class Control:
    def __init__(self, path: Path) -> None:
        if len(str(path).encode()) > MAX_SOCKET_PATH:
            raise ValueError(f"control socket path too long for a Unix socket: {path}")
        self.path = path

    async def request(self, method: str, target: str, body: dict[str, Any] | None = None,
                      timeout_seconds: float = 10.0) -> tuple[int, dict[str, Any]]:
        return await asyncio.wait_for(self._request(method, target, body), timeout_seconds)

    async def _request(self, method: str, target: str, body: dict[str, Any] | None) -> tuple[int, dict[str, Any]]:
        try:
            reader, writer = await asyncio.open_unix_connection(str(self.path))
        except OSError as e:
            raise ControlError(f"Litestream's control socket {self.path}: {e.strerror or e}") from None
        try:
            payload = json.dumps(body).encode() if body is not None else b""
            head = (f"{method} {target} HTTP/1.1\r\nHost: litestream\r\nConnection: close\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n")
            writer.write(head.encode() + payload)
            await writer.drain()
            raw = await reader.read()
        except OSError as e:
            raise ControlError(f"Litestream's control socket {self.path}: {e.strerror or e}") from None
        finally:
            writer.close()
        return parse_response(raw)

    async def stage(self, db: Path | str, timeout_seconds: float) -> SyncResult:
        """Turn what the WAL holds into LTX files now (no upload; the time limit is ours)."""
        status, answer = await self.request("POST", "/sync", {"path": str(db)}, timeout_seconds)
        if status != 200:
            raise ControlRefused(f"litestream sync {db}: {answer.get('error') or f'HTTP {status}'}")
        return SyncResult(str(answer.get("status")), int(answer.get("txid") or 0),
                          int(answer.get("replicated_txid") or 0))

    async def _path_call(self, action: str, body: dict[str, Any], timeout_seconds: float) -> str:
        status, answer = await self.request("POST", f"/{action}", body, timeout_seconds + 2)
        if status != 200:
            raise ControlRefused(f"litestream {action} {body['path']}: {answer.get('error') or f'HTTP {status}'}")
        return str(answer.get("status"))

    async def stop(self, db: Path | str, timeout_seconds: float) -> str:
        """Close one database (its uploader's context is cancelled, whatever retry it waits out; the
        read lock goes with it: hold ours first); Litestream tries a final sync within the timeout
        (a closing database takes no read lock again: a timeout is safe here).
        stopped | already_stopped."""
        return await self._path_call("stop", {"path": str(db), "timeout": max(1, int(timeout_seconds))},
                                     timeout_seconds)

    async def start(self, db: Path | str, timeout_seconds: float) -> str:
        """Open it again: a fresh uploader that syncs at once (no timeout sent: see above).
        started | already_running."""
        return await self._path_call("start", {"path": str(db)}, timeout_seconds)

    async def databases(self) -> list[dict[str, Any]]:
        status, answer = await self.request("GET", "/list")
        if status != 200:
            raise ControlError(f"litestream list: {answer.get('error') or f'HTTP {status}'}")
        listed = answer.get("databases", answer.get("value"))  # an object or a bare array, by version
        return [d for d in listed or [] if isinstance(d, dict)]

    async def info(self) -> dict[str, Any]:
        status, answer = await self.request("GET", "/info")
        if status != 200:
            raise ControlError(f"litestream info: {answer.get('error') or f'HTTP {status}'}")
        return answer


def parse_response(raw: bytes) -> tuple[int, dict[str, Any]]:
    """Status and JSON body of an HTTP/1.1 answer (Go's server: Content-Length or chunked)."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        raise ControlError("Litestream's control socket answered with something that is not HTTP") from None
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _unchunk(body)
    try:
        parsed = json.loads(body) if body.strip() else {}
    except ValueError:
        parsed = {"error": body.decode(errors="replace").strip()[:200]}
    return status, parsed if isinstance(parsed, dict) else {"value": parsed}


def _unchunk(body: bytes) -> bytes:
    out = bytearray()
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2:]
    return bytes(out)
