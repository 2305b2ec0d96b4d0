"""CredentialKeeper: holds the current credentials and refreshes them before they expire.

Refresh happens when the refresh margin is left (at half-life for short lifetimes), and right after the
kubelet rotates the token. When STS fails, the old credentials keep being served while they
last; retries back off exponentially with jitter; once they run out it says so on every retry.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any

from supervisor.core.backoff import Backoff
from supervisor.core.budget import Budget
from supervisor.core.errors import CredentialsRefused, SupervisorError, TokenError, Unreachable
from supervisor.core.logs import get_logger
from supervisor.core.settings import AwsSettings, KeeperSettings
from supervisor.core.state import State
from supervisor.identity import headstart, sts
from supervisor.identity import token as tokens
from supervisor.identity.credentials import Credentials

log = get_logger("keeper")
# With no valid credentials Litestream uploads nothing: a retry waits at most this (+/- jitter), not
# the minute-long cap, or a herd catches up over a minute after STS returns (73 s measured). A
# thousand pods then ask STS ~70 times a second during its outage, spread by the jitter.
EXPIRED_RETRY_MAX_SECONDS = 15.0
VALID_MARGIN_SECONDS = 1.0  # a request's round trip: signed before expiry, checked after it


def refresh_delay(creds: Credentials, margin_seconds: float, now: float | None = None) -> float:
    """Seconds from now until the next scheduled refresh."""
    lifetime = creds.lifetime_seconds
    # Refresh with `margin` left; lifetimes shorter than twice the margin refresh at half-life.
    after_obtained = max(lifetime - margin_seconds, lifetime / 2)
    now = time.time() if now is None else now
    return max(1.0, creds.obtained_at + after_obtained - now)


def next_delay(creds: Credentials | None, failures: int, margin_seconds: float, backoff: Backoff,
               now: float | None = None, rand: Callable[[float, float], float] = random.uniform,
               refused: bool = False) -> float:
    """When to try the next exchange: on schedule, or after `failures` failed ones with backoff.

    While the current credentials are still valid, a retry never waits past half of what is
    left; once they are gone, capped backoff with jitter (never a fixed one second), the cap at
    most EXPIRED_RETRY_MAX_SECONDS unless STS `refused` the last exchange.
    """
    now = time.time() if now is None else now
    if failures:
        left = creds.seconds_left(now) if creds is not None else 0.0
        if left <= 0:
            if refused:  # not an outage: asking again soon changes nothing
                return backoff.delay(failures, rand)
            cap = min(backoff.max_seconds, EXPIRED_RETRY_MAX_SECONDS)
            return replace(backoff, max_seconds=cap).delay(failures, rand)
        return min(backoff.delay(failures, rand), max(backoff.initial_seconds, left / 2))
    if creds is None:
        return 0.0
    return refresh_delay(creds, margin_seconds, now)


class CredentialKeeper:
    def __init__(self, aws: AwsSettings, settings: KeeperSettings, state: State,
                 endpoint: str, role_arn: str, token_file: Path, client: Any = None,
                 policy: str | None = None) -> None:
        self.aws = aws
        self.settings = settings
        self.state = state
        self.endpoint = endpoint
        self.role_arn = role_arn
        self.token_file = token_file
        self._client = client  # built for the first exchange of its own: a head start needs none
        self.policy = policy  # the session policy sent with every exchange (None: the role's whole policy)
        self.backoff = Backoff(settings.retry_initial_seconds, settings.retry_max_seconds)
        self._skew_warned = False
        self._current: Credentials | None = None
        self._token_fingerprint: str | None = None
        self._wake = asyncio.Event()
        self._wake_reason: str | None = None  # why the loop was woken, when not a rotation
        # Set by every successful exchange: one made outside the loop (an S3 AccessDenied) re-plans
        # it, or its outage backoff outlives the fresh credentials while STS is up again.
        self._obtained = asyncio.Event()

    @property
    def current(self) -> Credentials | None:
        return self._current

    def valid(self) -> bool:
        """Credentials a request sent now can still be signed with and arrive before they expire
        (the store refuses any other)."""
        return self._current is not None and self._current.seconds_left() > VALID_MARGIN_SECONDS

    async def exchange(self, reason: str, budget: Budget | None = None, *, refresh: bool = True) -> Credentials:
        """Read the token and trade it once (within the budget); record the outcome in State. Not a
        `refresh` when the same credentials are traded for others at start (the session policy)."""
        try:
            token = tokens.read(self.token_file)
            self._token_fingerprint = token.fingerprint
            early = headstart.take(headstart.Request(self.aws, self.endpoint, self.role_arn, token.value,
                                                     self.policy))
            if early is not None:
                call: Coroutine[Any, Any, Credentials] = self._answered_ahead(early, token)
                sent = early.sent
            else:
                call = self._exchange(token)
                sent = time.monotonic()
            if budget is None:
                creds = await call
            else:
                try:
                    async with budget.limit(f"STS at {self.endpoint}"):
                        creds = await call
                finally:
                    call.close()  # never awaited when the budget was spent already: not the user's news
            if creds.seconds_left() <= 0:
                # Served to no one (the broker answers 503) and, taken, refreshed every second:
                # a failed exchange instead, retried with backoff. (A skewed clock is already
                # corrected: expiry is on the server's terms.)
                raise Unreachable(f"STS at {self.endpoint} answered with credentials that expired already "
                                  f"(Expiration {creds.expiration_iso}); will retry")
        except (CredentialsRefused, TokenError) as e:
            self.state.sts_requests["refused"] += 1
            self.state.last_sts_result = "refused"
            self.state.last_sts_error = str(e)
            raise
        except Unreachable as e:
            self.state.sts_requests["unavailable"] += 1
            self.state.last_sts_result = "unavailable"
            self.state.last_sts_error = str(e)
            raise
        first = self._current is None
        self._current = creds
        self.state.sts_requests["ok"] += 1
        self.state.last_sts_result = "ok"
        self.state.last_sts_error = None
        self.state.credentials_expiration = creds.expiration
        self.state.credentials_obtained_at = creds.obtained_at
        if not first and refresh:
            self.state.credential_refreshes += 1
        self.state.session_policy = self.policy is not None
        self._obtained.set()
        # sts_seconds: the exchange's round trip (a slow STS delays every pod's start and each refresh)
        log.info("credentials_obtained", reason=reason, expires=creds.expiration_iso,
                 lifetime_seconds=round(creds.lifetime_seconds), token_fingerprint=token.fingerprint,
                 sts_seconds=round(time.monotonic() - sent, 3))
        if abs(creds.clock_skew_seconds) > sts.SKEW_TOLERANCE_SECONDS and not self._skew_warned:
            self._skew_warned = True
            log.warning("clock_skew", seconds=round(creds.clock_skew_seconds, 1),
                        detail="this node's clock differs from the STS server's; expiry is taken on the "
                               "server's terms, but fix the clock (NTP): tokens and signatures fail beyond minutes")
        return creds

    def _exchange(self, token: tokens.Token) -> Coroutine[Any, Any, Credentials]:
        if self._client is None:
            self._client = sts.new_client(self.aws, self.endpoint)
        return asyncio.to_thread(sts.exchange, self._client, self.aws, self.endpoint, self.role_arn, token,
                                 self.policy)

    async def _answered_ahead(self, early: headstart.HeadStart, token: tokens.Token) -> Credentials:
        try:
            answer = await asyncio.wrap_future(early.answer)
        except Exception as e:  # noqa: BLE001 (no answer: botocore meets the cause again and words it)
            log.debug("sts_head_start_unanswered", error=type(e).__name__)
            return await self._exchange(token)
        return sts.from_answer(answer, token, self.endpoint, self.aws.audience)

    async def obtain(self, budget: Budget) -> Credentials:
        """First credentials, retrying transient failures within the budget; refusal is final."""
        attempt = 0
        last: Unreachable | None = None
        while True:
            try:
                return await self.exchange("start", budget)
            except Unreachable as e:
                attempt += 1
                if budget.spent:
                    raise budget.gave_up(e, last) from None
                last = e
                wait = min(self.backoff.delay(attempt), budget.left())
                log.warning("sts_unavailable", error=str(e), retry_in=round(wait, 1))
                await asyncio.sleep(wait)

    def exchange_budget(self) -> Budget:
        """One exchange off the start path: a connect and a read, each up to the STS timeout."""
        return Budget(self.aws.sts_timeout_seconds * 2, "STS timeout")

    def exchange_soon(self, reason: str) -> None:
        """The loop exchanges at once (then with its backoff while that fails): the credentials in
        use are not the ones wanted (a session policy to restore)."""
        self._wake_reason = reason
        self._wake.set()

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

    async def _sleep(self, delay: float) -> str | None:
        """Wait `delay` s; "token" if the token changed, "obtained" if an exchange elsewhere succeeded."""
        waits = {asyncio.ensure_future(self._wake.wait()): "token",
                 asyncio.ensure_future(self._obtained.wait()): "obtained"}
        try:
            done, _ = await asyncio.wait(waits, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
        if not done:
            return None
        # a rotation outranks credentials obtained meanwhile: those came from the old token
        return "token" if self._wake.is_set() else "obtained"

    async def run(self) -> None:
        """Refresh forever (until cancelled)."""
        failures = 0
        refused = False
        while True:
            creds = self._current
            delay = next_delay(creds, failures, self.settings.refresh_margin_seconds, self.backoff, refused=refused)
            self._obtained.clear()
            woken = await self._sleep(delay)
            if woken == "obtained":
                failures = 0
                continue
            reason = "retry" if failures else "schedule"
            if woken == "token":
                reason = self._wake_reason or "token_rotated"
            self._wake.clear()
            try:
                fresh = await self.exchange(reason, self.exchange_budget())
                self._wake_reason = None
                refused = False
                # Expired on arrival (a clock far off, no Date header): back off, do not loop every second.
                failures = 0 if fresh.seconds_left() > 0 else failures + 1
            except SupervisorError as e:
                failures += 1
                refused = isinstance(e, (CredentialsRefused, TokenError))
                current = self._current
                if current is None or current.seconds_left() <= 0:
                    log.error("credentials_expired", error=str(e), attempts=failures,
                              detail="Litestream cannot upload until STS answers")
                else:
                    log.warning("refresh_failed", error=str(e), attempts=failures,
                                still_valid_seconds=round(current.seconds_left()))
