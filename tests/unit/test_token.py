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


async def broken_awatch(*_args: object, **_kw: object):
    raise OSError(24, "Too many open files")  # inotify limits, EMFILE: the watch cannot be had
    yield  # pragma: no cover


@pytest.mark.parametrize("watcher", ["inotify", "dead watcher: polling"])
def test_watch_sees_kubelet_rotations(tmp_path: Path, watcher: str) -> None:
    """With a dead watcher it degrades to polling and still sees rotations (issue 11, item 10:
    the sidecar used to exit 1, a crash loop)."""
    kwargs = {} if watcher == "inotify" else {"awatch": broken_awatch, "poll_seconds": 0.1}
    tokens = iter(fake_jwt(n=i, exp=time.time() + 600) for i in range(100))
    projector = TokenProjector(tmp_path / "tok", lambda: next(tokens))
    projector.rotate()
    seen: list[str] = []

    async def scenario() -> None:
        stop = asyncio.Event()

        async def on_change() -> None:
            seen.append(token.read(projector.path).value)

        task = asyncio.create_task(token.watch(projector.path, on_change, stop, **kwargs))
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
