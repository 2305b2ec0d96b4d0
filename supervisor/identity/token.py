"""The projected service-account token: read it, decode its claims, watch its directory.

The kubelet rewrites the token by swapping a `..data` symlink in the directory, so the file
is always re-read by path and the directory (not the file) is watched.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from supervisor.core.errors import TokenError
from supervisor.core.logs import get_logger
from supervisor.core.redact import secrets

if TYPE_CHECKING:
    import asyncio

    from supervisor.core.inotify import Inotify

log = get_logger("token")


@dataclass(frozen=True, repr=False)
class Token:
    value: str
    claims: dict[str, Any]

    def __repr__(self) -> str:
        return f"Token(sub={self.subject!r}, exp={self.expires_at})"

    @property
    def fingerprint(self) -> str:
        """A short, non-reversible name for this token, safe to log."""
        return hashlib.sha256(self.value.encode()).hexdigest()[:12]

    @property
    def subject(self) -> str | None:
        return self.claims.get("sub")

    @property
    def issuer(self) -> str | None:
        return self.claims.get("iss")

    @property
    def audiences(self) -> list[str]:
        aud = self.claims.get("aud")
        if isinstance(aud, str):
            return [aud]
        return [a for a in aud or [] if isinstance(a, str)]

    @property
    def expires_at(self) -> float | None:
        exp = self.claims.get("exp")
        return float(exp) if isinstance(exp, (int, float)) else None

    @property
    def not_before(self) -> float | None:
        nbf = self.claims.get("nbf", self.claims.get("iat"))
        return float(nbf) if isinstance(nbf, (int, float)) else None

    def seconds_left(self, now: float | None = None) -> float | None:
        if self.expires_at is None:
            return None
        return self.expires_at - (time.time() if now is None else now)

    def summary(self) -> dict[str, Any]:
        """Claims worth logging: no signature, nothing secret."""
        return {"sub": self.subject, "iss": self.issuer, "aud": self.audiences,
                "exp": self.expires_at, "fingerprint": self.fingerprint}


def decode_claims(value: str) -> dict[str, Any]:
    """The JWT payload, unverified: for diagnostics only (STS verifies the signature)."""
    parts = value.split(".")
    if len(parts) != 3:
        raise TokenError("token file does not hold a JWT (expected three dot-separated parts)")
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (ValueError, UnicodeDecodeError):
        raise TokenError("token file holds a malformed JWT (payload is not base64url JSON)") from None
    if not isinstance(claims, dict):
        raise TokenError("token file holds a malformed JWT (payload is not a JSON object)")
    return claims


def read(path: Path, *, now: float | None = None) -> Token:
    """Read and decode the token at `path`; refuse one that is missing, empty or expired."""
    try:
        value = path.read_text().strip()
    except FileNotFoundError:
        raise TokenError(f"token file {path} does not exist (is the projected token volume mounted?)") from None
    except OSError as e:
        raise TokenError(f"token file {path} cannot be read: {e.strerror}") from None
    if not value:
        raise TokenError(f"token file {path} is empty")
    secrets.add(value, slot="token")
    token = Token(value, decode_claims(value))
    left = token.seconds_left(now)
    if left is not None and left <= 0:
        raise TokenError(f"token in {path} expired {int(-left)}s ago (exp={int(token.expires_at or 0)}); "
                         "the kubelet should have rotated it: check the projected volume's expirationSeconds")
    return token


POLL_SECONDS = 5.0
SETTLE_SECONDS = 0.05  # the kubelet's swap is a few steps (dir, symlink, rename, rmtree): read after them


async def watch(path: Path, on_change: Callable[[], Awaitable[None]], stop: asyncio.Event,
                inotify: Inotify | None = None, poll_seconds: float = POLL_SECONDS) -> None:
    """Call on_change after each batch of changes in the token's directory, until stop is set.

    The kernel tells (the process's supervisor/core/inotify.py instance, handed in): nothing runs
    between rotations. Without one, or if the watch cannot be had or dies (inotify limits, the
    directory replaced), poll instead: every exchange re-reads the token anyway, so a dead watcher
    must cost latency, never the sidecar.
    """
    import asyncio  # here, not at the top: the first STS exchange reads the token before asyncio loads

    from supervisor.core.inotify import WatchGone

    try:
        if inotify is None:
            raise OSError("inotify not available")
        watcher = inotify.watch(path.parent)
    except OSError as e:
        watcher = None
        log.warning("token_watch_degraded", error=str(e), poll_seconds=poll_seconds,
                    detail="token directory not watchable; polling it instead (rotations seen later)")
    if watcher is not None:
        stopped = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                changed = asyncio.ensure_future(watcher.wait())
                await asyncio.wait({changed, stopped}, return_when=asyncio.FIRST_COMPLETED)
                if not changed.done():
                    changed.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await changed
                    return
                changed.result()
                await asyncio.sleep(SETTLE_SECONDS)
                await on_change()
            return
        except (WatchGone, OSError) as e:
            log.warning("token_watch_degraded", error=f"{type(e).__name__}: {e}", poll_seconds=poll_seconds,
                        detail="token directory not watchable; polling it instead (rotations seen later)")
        finally:
            stopped.cancel()
            watcher.close()
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), poll_seconds)
        if not stop.is_set():
            await on_change()
