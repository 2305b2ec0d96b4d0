"""A drill's restore that fails is the replica's fault only when it fails again after the replica
answered a listing: an S3 or STS outage in the middle of a download (a fault the bed cannot make
Litestream's retrying SDK give up on within a test's time) must not page as `unrestorable`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from supervisor.core.budget import Budget
from supervisor.core.errors import RestoreFailed, Unreachable
from supervisor.replica import litestream_restore as restorer
from supervisor.replica import verify
from supervisor.replica.verify import Verifier


class Db:
    name = "app"
    path = Path("/data/app.db")


def _verifier(monkeypatch: pytest.MonkeyPatch, restores: list[Exception | None],
              listing: Exception | None = None) -> tuple[Verifier, list[str]]:
    calls: list[str] = []

    async def fake_restore(*_: Any, **__: Any) -> None:
        calls.append("restore")
        outcome = restores.pop(0)
        if outcome is not None:
            raise outcome

    async def fake_inspect(*_: Any) -> None:
        calls.append("list")
        if listing is not None:
            raise listing

    monkeypatch.setattr(restorer, "run_litestream_restore", fake_restore)
    monkeypatch.setattr(verify, "inspect_replica", fake_inspect)
    return Verifier(None, "litestream", Path("/x.yml"), None), calls  # type: ignore[arg-type]


def test_a_restore_that_fails_once_is_retried_after_a_listing(monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: Path) -> None:
    v, calls = _verifier(monkeypatch, [RestoreFailed("connection reset"), None])
    (tmp_path / "x.tmp-partial").write_bytes(b"half")
    assert asyncio.run(v.restore(Db(), tmp_path / "x.tmp", Budget(10), {})) is None  # type: ignore[arg-type]
    assert calls == ["restore", "list", "restore"]
    assert not list(tmp_path.iterdir())  # the first attempt's leftovers removed before the second


def test_twice_is_the_replicas_fault(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    v, calls = _verifier(monkeypatch, [RestoreFailed("checksum mismatch"), RestoreFailed("checksum mismatch")])
    assert asyncio.run(v.restore(Db(), tmp_path / "x.tmp", Budget(10), {})) == "checksum mismatch"  # type: ignore[arg-type]
    assert calls == ["restore", "list", "restore"]


def test_an_unreachable_replica_raises_instead_of_blaming_the_data(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    v, calls = _verifier(monkeypatch, [RestoreFailed("connection refused")], listing=Unreachable("S3 unreachable"))
    with pytest.raises(Unreachable):
        asyncio.run(v.restore(Db(), tmp_path / "x.tmp", Budget(10), {}))  # type: ignore[arg-type]
    assert calls == ["restore", "list"]
