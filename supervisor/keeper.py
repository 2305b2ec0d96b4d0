"""CredentialKeeper: holds the current credentials and refreshes them before they expire.

Refresh happens when the refresh margin is left (at half-life for short lifetimes), and right after the
kubelet rotates the token. When STS fails, the old credentials keep being served while they
last; retries back off exponentially with jitter; once they run out it says so on every retry.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

from supervisor import sts
from supervisor import token as tokens
from supervisor.credentials import Credentials
from supervisor.errors import CredentialsRefused, SupervisorError, TokenError, Unreachable
from supervisor.logs import get_logger
from supervisor.settings import AwsSettings, KeeperSettings
from supervisor.state import State

log = get_logger("keeper")


def refresh_delay(creds: Credentials, margin_seconds: float, now: float | None = None) -> float:
    """Seconds from now until the next scheduled refresh."""
    lifetime = creds.lifetime_seconds
    # Refresh with `margin` left; lifetimes shorter than twice the margin refresh at half-life.
    after_obtained = max(lifetime - margin_seconds, lifetime / 2)
    now = time.time() if now is None else now
    return max(1.0, creds.obtained_at + after_obtained - now)


class CredentialKeeper:
    def __init__(self, aws: AwsSettings, settings: KeeperSettings, state: State,
                 endpoint: str, role_arn: str, token_file: Path) -> None:
        self.aws = aws
        self.settings = settings
        self.state = state
        self.endpoint = endpoint
        self.role_arn = role_arn
        self.token_file = token_file
        self._client = sts.new_client(aws, endpoint)
        self._current: Credentials | None = None
        self._token_fingerprint: str | None = None
        self._wake = asyncio.Event()
        self._updated = asyncio.Event()

    @property
    def current(self) -> Credentials | None:
        return self._current

    async def exchange(self, reason: str) -> Credentials:
        """Read the token and trade it once; record the outcome in State."""
        try:
            token = tokens.read(self.token_file)
            self._token_fingerprint = token.fingerprint
            creds = await asyncio.to_thread(sts.exchange, self._client, self.aws, self.endpoint,
                                            self.role_arn, token)
        except (CredentialsRefused, TokenError) as e:
            self.state.sts_requests["refused"] += 1
            self.state.last_sts_error = str(e)
            raise
        except Unreachable as e:
            self.state.sts_requests["unavailable"] += 1
            self.state.last_sts_error = str(e)
            raise
        first = self._current is None
        self._current = creds
        self.state.sts_requests["ok"] += 1
        self.state.last_sts_error = None
        self.state.credentials_expiration = creds.expiration
        self.state.credentials_obtained_at = creds.obtained_at
        if not first:
            self.state.credential_refreshes += 1
        self._updated.set()
        log.info("credentials_obtained", reason=reason, expires=creds.expiration_iso,
                 lifetime_seconds=round(creds.lifetime_seconds), token_fingerprint=token.fingerprint)
        return creds

    async def obtain(self, timeout_seconds: float) -> Credentials:
        """First credentials, retrying transient failures within the timeout; refusal is final."""
        deadline = time.monotonic() + timeout_seconds
        delay = self.settings.retry_initial_seconds
        while True:
            try:
                return await self.exchange("start")
            except Unreachable as e:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Unreachable(f"{e} (gave up after {timeout_seconds:g}s)") from None
                wait = delay * random.uniform(0.8, 1.2)  # noqa: S311 (jitter: pods must not retry in step)
                log.warning("sts_unavailable", error=str(e), retry_in=round(wait, 1))
                await asyncio.sleep(min(wait, left))
                delay = min(delay * 2, self.settings.retry_max_seconds)

    async def on_token_change(self) -> None:
        """Called by the token watcher; refreshes only when the token really changed."""
        try:
            fingerprint = tokens.read(self.token_file).fingerprint
        except SupervisorError as e:
            log.warning("token_unreadable", error=str(e))
            return
        if fingerprint != self._token_fingerprint:
            self.state.token_rotations += 1
            log.info("token_rotated", token_fingerprint=fingerprint)
            self._wake.set()

    async def run(self) -> None:
        """Refresh forever (until cancelled)."""
        failures = 0
        while True:
            creds = self._current
            if failures:
                delay = min(self.settings.retry_initial_seconds * 2 ** (failures - 1),
                            self.settings.retry_max_seconds)
                delay *= random.uniform(0.8, 1.2)  # noqa: S311 (jitter, not crypto)
            elif creds is None:
                delay = 0.0
            else:
                delay = refresh_delay(creds, self.settings.refresh_margin_seconds)
            if creds is not None and failures:
                delay = min(delay, max(1.0, creds.seconds_left() / 2))
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
                reason = "token_rotated"
            except TimeoutError:
                reason = "retry" if failures else "schedule"
            self._wake.clear()
            try:
                await self.exchange(reason)
                failures = 0
            except SupervisorError as e:
                failures += 1
                current = self._current
                if current is None or current.seconds_left() <= 0:
                    log.error("credentials_expired", error=str(e), attempts=failures,
                              detail="Litestream cannot upload until STS answers")
                else:
                    log.warning("refresh_failed", error=str(e), attempts=failures,
                                still_valid_seconds=round(current.seconds_left()))
