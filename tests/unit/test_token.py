from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path

import pytest

from supervisor.core.errors import TokenError
from supervisor.identity import token
from tests.bed.projector import TokenProjector


def fake_jwt(**claims: object) -> str:
    def b64(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
    return f"{b64({'alg': 'RS256'})}.{b64(claims)}.c2ln"


def test_claims_are_decoded(tmp_path: Path) -> None:
    p = tmp_path / "token"
    p.write_text(fake_jwt(sub="system:serviceaccount:a:b", aud="sts", exp=time.time() + 60) + "\n")
    t = token.read(p)
    assert t.subject == "system:serviceaccount:a:b" and t.audiences == ["sts"]
    assert 50 < (t.seconds_left() or 0) <= 60
    assert t.value not in repr(t)


@pytest.mark.parametrize(("content", "message"), [
    (None, "does not exist"),
    ("", "is empty"),
    ("not-a-jwt", "three dot-separated"),
    ("a.!!!.c", "malformed"),
    (fake_jwt(exp=time.time() - 100), "expired"),
], ids=["missing", "empty", "not-a-jwt", "malformed", "expired"])  # stable ids: the token is minted per run
def test_bad_tokens_are_refused_with_a_reason(tmp_path: Path, content: str | None, message: str) -> None:
    p = tmp_path / "token"
    if content is not None:
        p.write_text(content)
    with pytest.raises(TokenError, match=message):
        token.read(p)


class DyingWatch:
    """A watch that dies at its first wait (the directory replaced: WatchGone)."""

    def watch(self, _directory: Path) -> DyingWatch:
        return self

    async def wait(self, timeout_seconds: float | None = None) -> bool:
        from supervisor.core.inotify import WatchGone
        raise WatchGone("gone")

    def close(self) -> None:
        pass


class RefusedWatch:
    def watch(self, _directory: Path) -> None:
        raise OSError(28, "No space left on device")  # max_user_watches reached


WATCHERS = {
    "inotify": {"inotify": "real"},
    "no inotify: polling": {"poll_seconds": 0.1},  # max_user_instances reached, not Linux
    "watch refused: polling": {"inotify": RefusedWatch(), "poll_seconds": 0.1},
    "watch died: polling": {"inotify": DyingWatch(), "poll_seconds": 0.1},
}


@pytest.mark.parametrize("watcher", list(WATCHERS))
def test_watch_sees_kubelet_rotations(tmp_path: Path, watcher: str) -> None:
    """With no watch or a dead one it degrades to polling and still sees rotations (issue 11,
    item 10: the sidecar used to exit 1, a crash loop)."""
    kwargs = WATCHERS[watcher]
    tokens = iter(fake_jwt(n=i, exp=time.time() + 600) for i in range(100))
    projector = TokenProjector(tmp_path / "tok", lambda: next(tokens))
    projector.rotate()
    seen: list[str] = []

    async def scenario() -> None:
        stop = asyncio.Event()

        async def on_change() -> None:
            seen.append(token.read(projector.path).value)

        from supervisor.core.inotify import Inotify

        given = dict(kwargs)
        if given.get("inotify") == "real":
            given["inotify"] = Inotify.open()
        task = asyncio.create_task(token.watch(projector.path, on_change, stop, **given))
        await asyncio.sleep(0.3)
        for _ in range(2):
            projector.rotate()
            deadline = time.monotonic() + 5
            while projector.current not in seen and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(scenario())
    assert projector.current in seen and len(set(seen)) >= 2


def test_the_token_watch_costs_nothing_between_rotations(tmp_path: Path) -> None:
    """Idle, the watch runs nothing: no thread, no timer waking the loop (issue 29: watchfiles'
    watcher thread woke every 50 ms, 0.065 s of CPU per idle minute, as much as Litestream's)."""
    import threading

    projector = TokenProjector(tmp_path / "tok", lambda: fake_jwt(exp=time.time() + 600))
    projector.rotate()
    wakeups: list[float] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        selector = loop._selector  # type: ignore[attr-defined]
        select = selector.select

        def counted(timeout: float | None = None) -> list:
            wakeups.append(time.monotonic())
            return select(timeout)

        stop = asyncio.Event()
        seen: list[str] = []

        async def on_change() -> None:
            seen.append(token.read(projector.path).value)

        from supervisor.core.inotify import Inotify

        threads = threading.active_count()
        task = asyncio.create_task(token.watch(projector.path, on_change, stop, Inotify.open()))
        await asyncio.sleep(0.1)
        selector.select = counted
        await asyncio.sleep(1.0)  # idle: one select that sleeps through (asyncio.sleep's own timer)
        selector.select = select
        assert threading.active_count() == threads, "the watch runs a thread"
        projector.rotate()
        deadline = time.monotonic() + 2
        while projector.current not in seen and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert projector.current in seen
        stop.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(scenario())
    assert len(wakeups) <= 3, f"the loop woke {len(wakeups)} times in an idle second"
