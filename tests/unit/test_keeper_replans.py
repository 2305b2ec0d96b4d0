"""An exchange made outside the keeper's loop (the S3-AccessDenied path) re-plans the loop.

Seen on the bed: after an STS outage the loop sat in a long backoff; a lease renewal's
AccessDenied fetched fresh 10 s credentials out of band, and the loop, still asleep on the
outage's backoff, let them expire 10 s later with STS up. Litestream then had no credentials
for its final upload and the sidecar exited 10. The invariant: while STS answers, credentials
obtained anywhere are refreshed before they expire.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from supervisor.core.budget import Budget
from supervisor.core.errors import Unreachable
from supervisor.core.settings import AwsSettings, KeeperSettings
from supervisor.core.state import State
from supervisor.identity import keeper as keeper_module
from supervisor.identity.credentials import Credentials
from supervisor.identity.keeper import CredentialKeeper

LIFETIME = 2.0


class FakeToken:
    value = "header.payload.signature"
    fingerprint = "f1"


def make_keeper(monkeypatch: pytest.MonkeyPatch, sts_up: list[bool], calls: list[float]) -> CredentialKeeper:
    monkeypatch.setattr(keeper_module.tokens, "read", lambda path: FakeToken())
    aws = AwsSettings(role_arn="arn:aws:iam::000:role/r", token_file=Path("/token"), session_name="s",
                      sts_endpoint="http://127.0.0.1:1", s3_endpoint=None, region="us-east-1", ca_bundle=None,
                      duration_seconds=None)
    keeper = CredentialKeeper(aws, KeeperSettings(retry_initial_seconds=30.0, retry_max_seconds=30.0), State(),
                              "http://127.0.0.1:1", "arn:aws:iam::000:role/r", Path("/token"), client=object())

    async def exchange(token: Any) -> Credentials:
        calls.append(time.monotonic())
        if not sts_up[0]:
            raise Unreachable("STS at http://127.0.0.1:1 unreachable")
        now = time.time()
        return Credentials("AKIA", "secret", "session", now + LIFETIME, now)

    monkeypatch.setattr(keeper, "_exchange", exchange)
    return keeper


async def scenario(keeper: CredentialKeeper, sts_up: list[bool], calls: list[float]) -> None:
    loop = asyncio.create_task(keeper.run())
    try:
        await asyncio.sleep(0.2)
        assert len(calls) == 1, "the loop's first exchange (STS down) failed and it now backs off 30 s"
        sts_up[0] = True
        await keeper.exchange("s3_access_denied", Budget(5, "STS"))  # out of band, as inspection does
        got = keeper.current
        assert got is not None
        # STS is up: the loop must refresh these before they expire, not sleep out its 30 s backoff
        await asyncio.sleep(LIFETIME + 0.3)
        assert len(calls) >= 3, "the loop did not re-plan after the out-of-band exchange"
        current = keeper.current
        assert current is not None and current.seconds_left() > 0
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)


def test_out_of_band_exchange_replans_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    sts_up = [False]
    calls: list[float] = []
    keeper = make_keeper(monkeypatch, sts_up, calls)
    asyncio.run(scenario(keeper, sts_up, calls))


def test_exchange_soon_wakes_the_loop_with_its_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    """The batch-delete check could not narrow the credentials again (its budget spent): the loop
    does it at once, not at the next scheduled refresh (a hostile review of the check)."""
    calls: list[float] = []
    keeper = make_keeper(monkeypatch, [True], calls)
    reasons: list[str] = []
    exchange = keeper.exchange

    async def recorded(reason: str, budget: Any = None, **kw: Any) -> Credentials:
        reasons.append(reason)
        return await exchange(reason, budget, **kw)

    monkeypatch.setattr(keeper, "exchange", recorded)

    async def go() -> None:
        await keeper.exchange("start", Budget(5, "STS"))
        loop = asyncio.create_task(keeper.run())
        try:
            await asyncio.sleep(0.1)
            keeper.exchange_soon("session_policy_restored")
            async with asyncio.timeout(5):
                while len(reasons) < 2:
                    await asyncio.sleep(0.01)
        finally:
            loop.cancel()
            await asyncio.gather(loop, return_exceptions=True)

    asyncio.run(go())
    assert reasons[:2] == ["start", "session_policy_restored"]
    assert keeper._wake_reason is None
