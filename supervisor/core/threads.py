"""Blocking calls (botocore, sqlite) run in daemon threads, one per call.

A call abandoned when its budget ran out (a hung STS, a listing that never answers) must not
hold the process: asyncio's default executor is joined at exit, so `--timeout 3` against a hung
STS used to take the socket's 10 s read timeout anyway.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class DaemonThreads(ThreadPoolExecutor):
    """asyncio accepts only a ThreadPoolExecutor as default executor; none of its pool is used."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as e:  # noqa: BLE001 (handed to the awaiting coroutine)
                future.set_exception(e)

        threading.Thread(target=run, daemon=True, name="blocking-call").start()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Nothing to join: abandoned calls end with the process."""
