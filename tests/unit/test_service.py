"""CredentialService's S3 clients: one per endpoint and credentials, however many threads ask."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from supervisor import replica as replicas
from supervisor import settings
from supervisor.config import Database, Replica
from supervisor.credentials import Credentials
from supervisor.service import CredentialService
from supervisor.state import State


def test_threads_asking_at_once_share_one_client(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    built: list[str] = []

    def slow_client(creds: Credentials, replica: Replica, **_: Any) -> object:
        built.append(creds.access_key_id)
        time.sleep(0.05)  # building a botocore client takes milliseconds, holding the GIL mostly
        return object()

    monkeypatch.setattr(replicas, "s3_client", slow_client)
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
