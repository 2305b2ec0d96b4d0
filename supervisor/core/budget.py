"""One time budget per command, handed to every step: each await is bounded by what is left.

Separate per-step timeouts add up behind the user's back (`--timeout 3` once took 10.5 s);
one Budget created by the command and passed down cannot.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

from supervisor.core.errors import OutOfTime, Unreachable


class Budget:
    def __init__(self, seconds: float, option: str = "--timeout",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.option = option
        self._clock = clock
        self._end = clock() + seconds

    def left(self) -> float:
        return max(0.0, self._end - self._clock())

    @property
    def spent(self) -> bool:
        return self._end - self._clock() <= 0

    def check(self, what: str) -> float:
        """Seconds left, or OutOfTime naming the step that ran out of time."""
        left = self._end - self._clock()  # one reading: never "not spent" and then 0 s left
        if left <= 0:
            raise OutOfTime(f"{what}: gave up after {self.option} {self.seconds:g}s")
        return left

    @contextlib.asynccontextmanager
    async def limit(self, what: str) -> AsyncIterator[None]:
        """`async with budget.limit(what):` the block runs within what is left; OutOfTime naming
        `what` when the budget runs out (before the block starts, or during it)."""
        try:
            async with asyncio.timeout(self.check(what)):
                yield
        except TimeoutError:
            raise OutOfTime(f"{what}: no answer within {self.option} {self.seconds:g}s") from None

    def gave_up(self, error: Unreachable, last: Unreachable | None) -> Unreachable:
        """What ends a retry loop once the budget is spent: the last real failure and the limit
        (the budget's own OutOfTime says when, not why every try failed)."""
        if isinstance(error, OutOfTime):
            if last is None:
                return error  # no answer at all: its own words say so
            error = last
        why = str(error).removesuffix("; will retry")
        return Unreachable(f"{why}; gave up after {self.option} {self.seconds:g}s")

    def sub(self, seconds: float) -> Budget:
        """A budget for one step: at most `seconds`, never more than what is left here."""
        return Budget(min(seconds, self.left()), self.option, self._clock)
