"""Budget.limit: one time budget bounds a block, and its error names the step and the option."""

from __future__ import annotations

import asyncio

import pytest

from supervisor.core.budget import Budget
from supervisor.core.errors import OutOfTime


def test_a_block_within_the_budget_runs_to_its_end() -> None:
    async def go() -> int:
        async with Budget(5).limit("s3://b/k"):
            await asyncio.sleep(0.01)
            return 7

    assert asyncio.run(go()) == 7


def test_a_block_that_outlasts_the_budget_is_cut_and_named() -> None:
    async def go() -> None:
        async with Budget(0.05, "--timeout").limit("s3://b/k"):
            await asyncio.sleep(5)

    with pytest.raises(OutOfTime, match=r"^s3://b/k: no answer within --timeout 0.05s$"):
        asyncio.run(go())


def test_a_spent_budget_never_starts_the_block() -> None:
    started = []

    async def go() -> None:
        budget = Budget(0.0, "--restore-timeout")
        async with budget.limit("STS at https://127.0.0.1:9000"):
            started.append(True)

    with pytest.raises(OutOfTime, match=r"gave up after --restore-timeout 0s"):
        asyncio.run(go())
    assert started == []


def test_an_error_inside_the_block_is_its_own() -> None:
    async def go() -> None:
        async with Budget(5).limit("x"):
            raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        asyncio.run(go())
