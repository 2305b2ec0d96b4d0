"""CredentialService: S3 clients (one per endpoint and credentials, however many threads ask) and its start."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from supervisor.core import settings
from supervisor.core.budget import Budget
from supervisor.core.state import State
from supervisor.identity import s3, sts
from supervisor.identity.credentials import Credentials
from supervisor.identity.service import CredentialService
from supervisor.litestream.config import Database, LitestreamConfig, Replica
from tests.unit.test_token import fake_jwt


def test_threads_asking_at_once_share_one_client(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    built: list[str] = []

    def slow_client(creds: Credentials, replica: Replica, **_: Any) -> object:
        built.append(creds.access_key_id)
        time.sleep(0.05)  # building a botocore client takes milliseconds, holding the GIL mostly
        return object()

    monkeypatch.setattr(s3, "s3_client", slow_client)
    s = settings.build({}, {"AWS_ROLE_ARN": "arn:r", "AWS_WEB_IDENTITY_TOKEN_FILE": str(tmp_path / "token")})
    service = CredentialService(s, State(), None)
    replica = Replica("bucket", "app.db", "http://127.0.0.1:9", "us-east-1", True)
    db = Database(tmp_path / "app.db", replica, tmp_path / ".app.db-litestream")
    service.keeper._current = Credentials("AK1", "secret-1", "token-1", time.time() + 3600, time.time())

    clients: list[object] = []
    start = threading.Barrier(6)

    def ask() -> None:
        start.wait()
        clients.append(service.s3(db))

    threads = [threading.Thread(target=ask) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert built == ["AK1"] and len({id(c) for c in clients}) == 1

    # new credentials: a new client, the old one dropped
    service.keeper._current = Credentials("AK2", "secret-2", "token-2", time.time() + 3600, time.time())
    assert service.s3(db) is not clients[0] and built == ["AK1", "AK2"]
    assert service.s3(db) is service.s3(db) and built == ["AK1", "AK2"]


def _service_with_one_db(tmp_path: Path) -> CredentialService:
    token_file = tmp_path / "token"
    token_file.write_text(fake_jwt(sub="system:serviceaccount:a:b", aud="sts", exp=time.time() + 600))
    s = settings.build({}, {"AWS_ROLE_ARN": "arn:r", "AWS_WEB_IDENTITY_TOKEN_FILE": str(token_file)})
    replica = Replica("bucket", "app.db", "http://127.0.0.1:9", "us-east-1", True)
    db = Database(tmp_path / "app.db", replica, tmp_path / ".app.db-litestream")
    return CredentialService(s, State(), LitestreamConfig(tmp_path / "litestream.yml", {}, (db,)))


def test_s3_models_load_while_the_first_exchange_waits(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    spans: dict[str, tuple[float, float]] = {}

    def slow_exchange(*_: Any, **__: Any) -> Credentials:
        started = time.monotonic()
        time.sleep(0.2)  # STS answering (the thread waits on its socket, not the GIL)
        spans["exchange"] = (started, time.monotonic())
        return Credentials("AK1", "secret-1", "token-1", time.time() + 3600, time.time())

    real_load = s3.load_models

    def timed_load(replica: Replica) -> None:
        started = time.monotonic()
        real_load(replica)  # the real botocore client construction, unsigned, nothing sent
        spans["models"] = (started, time.monotonic())

    monkeypatch.setattr(sts, "exchange", slow_exchange)
    monkeypatch.setattr(s3, "load_models", timed_load)
    service = _service_with_one_db(tmp_path)

    async def start() -> Credentials:
        try:
            return await service.start(Budget(5), watch_token=False)
        finally:
            await service.close()

    creds = asyncio.run(start())
    assert creds.access_key_id == "AK1"
    # the request goes out first; the models are parsed inside its wait, not after it
    assert spans["exchange"][0] <= spans["models"][0] and spans["models"][1] <= spans["exchange"][1]


def test_a_failed_preload_changes_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def exchange(*_: Any, **__: Any) -> Credentials:
        return Credentials("AK1", "secret-1", "token-1", time.time() + 3600, time.time())

    def broken(replica: Replica) -> None:
        raise ValueError("endpoint botocore cannot parse")

    monkeypatch.setattr(sts, "exchange", exchange)
    monkeypatch.setattr(s3, "load_models", broken)
    service = _service_with_one_db(tmp_path)

    async def start() -> Credentials:
        try:
            return await service.start(Budget(5), watch_token=False)
        finally:
            await service.close()

    assert asyncio.run(start()).access_key_id == "AK1"
