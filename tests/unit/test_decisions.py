"""Pure decisions, tested without the bed: final position, shutdown exit code, retry schedules,
budgets (issue 11: "decisions as pure functions")."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.core.backoff import Backoff
from supervisor.core.budget import Budget
from supervisor.core.errors import ExitCode, Unreachable
from supervisor.identity.credentials import Credentials
from supervisor.identity.keeper import next_delay, refresh_delay
from supervisor.replica.outcome import FinalPosition, has_data, shutdown_exit_code


def fp(local: int, remote: int | None, data: bool = True, catch_up: bool = True) -> FinalPosition:
    return FinalPosition("/d/a.db", local, remote, data, catch_up)


@pytest.mark.parametrize(("final", "confirmed"), [
    (fp(5, 5), True), (fp(5, 7), True), (fp(5, 4), False), (fp(5, None), False),
    (fp(0, 0, data=False), True),  # nothing ever written
    (fp(0, 0, data=True), False),  # data Litestream never recorded as sent
    (fp(5, 5, catch_up=False), False),  # the final -once failed: WAL frames may be missing (item 5)
    (fp(0, None, data=False, catch_up=False), True),
])
def test_final_position_confirmed(final: FinalPosition, confirmed: bool) -> None:
    assert final.confirmed is confirmed
    assert (final.reason is None) is confirmed


def test_shutdown_exit_code() -> None:
    ok, bad = fp(5, 5), fp(5, 4)
    assert shutdown_exit_code([ok], forced=False, task_failed=False) == 0
    assert shutdown_exit_code([ok, bad], forced=False, task_failed=False) == ExitCode.FINAL_SYNC_UNCONFIRMED
    assert shutdown_exit_code([ok], forced=True, task_failed=False) == ExitCode.FINAL_SYNC_UNCONFIRMED
    assert shutdown_exit_code([ok], forced=False, task_failed=True) == ExitCode.INTERNAL
    assert shutdown_exit_code([bad], forced=False, task_failed=True) == ExitCode.FINAL_SYNC_UNCONFIRMED
    assert shutdown_exit_code([ok], forced=False, task_failed=False, app_code=3) == 3
    assert shutdown_exit_code([bad], forced=False, task_failed=False, app_code=0) == ExitCode.FINAL_SYNC_UNCONFIRMED
    assert shutdown_exit_code([ok], forced=False, task_failed=False, extra=15) == 15
    assert shutdown_exit_code([bad], forced=False, task_failed=False, extra=15) == ExitCode.FINAL_SYNC_UNCONFIRMED
    assert shutdown_exit_code([], forced=False, task_failed=False) == 0


def test_has_data_sees_a_wal_only_database(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    assert not has_data(db)
    db.touch()
    assert not has_data(db)
    (tmp_path / "a.db-wal").write_bytes(b"x")
    assert has_data(db)


def test_backoff_grows_is_capped_and_jittered() -> None:
    b = Backoff(1.0, 60.0, 0.2)
    assert [b.delay(n, lambda lo, hi: 1.0) for n in (1, 2, 3, 7, 20)] == [1, 2, 4, 60, 60]
    assert b.delay(3, lambda lo, hi: lo) == pytest.approx(3.2) and b.delay(3, lambda lo, hi: hi) == pytest.approx(4.8)


def creds(obtained: float, lifetime: float) -> Credentials:
    return Credentials("AKID", "secret-000000", "session-000000", obtained + lifetime, obtained)


def test_refresh_schedule() -> None:
    assert refresh_delay(creds(0, 3600), 900, now=0) == 2700
    assert refresh_delay(creds(0, 10), 900, now=0) == 5  # short lifetimes: half-life


def test_retries_after_expiry_back_off_with_jitter_instead_of_every_second() -> None:
    """Item 11: once credentials expired, retries were a fixed 1 s, in lockstep across pods."""
    b = Backoff(1.0, 60.0)
    expired = creds(0, 10)
    mid = lambda lo, hi: 1.0  # noqa: E731
    delays = [next_delay(expired, n, 900, b, now=100, rand=mid) for n in range(1, 8)]
    assert delays == [1, 2, 4, 8, 15, 15, 15]  # expired: capped at EXPIRED_RETRY_MAX_SECONDS
    spread = {next_delay(expired, 5, 900, b, now=100, rand=r) for r in (lambda lo, hi: lo, lambda lo, hi: hi)}
    assert len(spread) == 2  # jitter: pods do not retry in step


def test_once_credentials_are_gone_a_retry_never_waits_a_minute() -> None:
    """Issue 29: a herd caught up 73 s after STS came back: with nothing to upload with, each keeper
    was waiting out a 48-72 s backoff. Expired, retries stay within EXPIRED_RETRY_MAX_SECONDS (with
    jitter: pods still do not retry in step); still valid, the long backoff (and half of what is left)."""
    from supervisor.identity.keeper import EXPIRED_RETRY_MAX_SECONDS

    b = Backoff(1.0, 60.0)
    extremes = (lambda lo, hi: lo, lambda lo, hi: hi)
    after_many = [next_delay(creds(0, 10), 20, 900, b, now=100, rand=r) for r in extremes]
    assert max(after_many) <= EXPIRED_RETRY_MAX_SECONDS * 1.2 and len(set(after_many)) == 2
    assert next_delay(None, 20, 900, b, now=100, rand=lambda lo, hi: 1.0) == EXPIRED_RETRY_MAX_SECONDS
    valid = creds(0, 1000)
    assert next_delay(valid, 20, 900, b, now=100, rand=lambda lo, hi: 1.0) == 60  # 900 s left: long backoff
    # refused (a bad token, a role that trusts no one): not an outage, the long backoff
    assert next_delay(None, 20, 900, b, now=100, rand=lambda lo, hi: 1.0, refused=True) == 60
    # days of outage: no float overflow (attempt 1025 raised OverflowError and ended the keeper)
    assert next_delay(None, 5000, 900, b, now=100, rand=lambda lo, hi: 1.0) == EXPIRED_RETRY_MAX_SECONDS
    assert Backoff(0.5, 5.0).delay(100_000, lambda lo, hi: 1.0) == 5.0


def test_retries_while_still_valid_never_wait_past_half_of_what_is_left() -> None:
    b = Backoff(1.0, 60.0)
    valid = creds(0, 100)
    assert next_delay(valid, 10, 900, b, now=80, rand=lambda lo, hi: 1.0) == 10  # 20 s left -> 10


def test_budget_bounds_every_step() -> None:
    now = [0.0]
    budget = Budget(10, "--timeout", clock=lambda: now[0])
    assert budget.left() == 10
    now[0] = 4
    step = budget.sub(30)
    assert step.left() == 6
    now[0] = 11
    assert budget.spent and budget.left() == 0
    with pytest.raises(Unreachable, match="--timeout 10s"):
        budget.check("listing")


def test_a_herd_spreads_its_catch_ups_over_a_share_of_the_outage() -> None:
    """Issue 29: every sidecar on a store sees it return within the same second; each caught up at
    once, and 50 sidecars' backlogs landed in one second (23x the steady rate with 6 of them)."""
    import random

    from supervisor.jobs.outage import catch_up_delay

    rng = random.Random(29)
    after_30 = [catch_up_delay(30, rng.uniform) for _ in range(1000)]
    assert max(after_30) <= 4.5 and min(after_30) >= 0
    assert sum(1 for d in after_30 if d < 1) < 300  # spread over the window, not bunched at its start
    assert max(catch_up_delay(10, rng.uniform) for _ in range(1000)) <= 1.5  # issue 26: caught up within 3 s
    assert catch_up_delay(3600, lambda lo, hi: hi) == 10.0  # capped
    assert catch_up_delay(0, lambda lo, hi: hi) == 0.0


def test_a_catch_up_waits_its_share_before_renewing_or_reopening(monkeypatch: pytest.MonkeyPatch) -> None:
    """The spread is applied where the herd's requests start: the lease renewal and the reopen both
    come after catch_up_delay, not only the upload."""
    import asyncio
    import time
    from types import SimpleNamespace

    from supervisor.jobs import outage, replicate

    renewed: list[float] = []
    asked: list[float] = []

    def delay(down: float) -> float:
        asked.append(down)
        return 0.3

    monkeypatch.setattr(outage, "catch_up_delay", delay)
    lease = SimpleNamespace(renew_now=lambda: renewed.append(time.monotonic()))
    reopened: list[float] = []

    async def reopen(db: object, down: float, spread: float) -> None:
        reopened.append(time.monotonic())

    owner = SimpleNamespace(leases={"a": lease}, control=None, child=None, reopen=reopen,
                            state=SimpleNamespace(shutting_down=False))

    async def scenario() -> float:
        started = time.monotonic()
        await replicate.Replicator.catch_up(owner, SimpleNamespace(name="a"), 30.0)  # type: ignore[arg-type]
        return started

    started = asyncio.run(scenario())
    assert asked == [30.0] and len(renewed) == 1 and renewed[0] - started >= 0.29
    assert len(reopened) == 1 and reopened[0] >= renewed[0]
