"""The slim botocore models (supervisor/identity/clients.py) build the very requests the full models do,
for every operation the supervisor calls, and parse the same answers."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import botocore
import botocore.loaders
import botocore.session
import pytest
from botocore import UNSIGNED
from botocore.awsrequest import AWSResponse
from botocore.config import Config

from supervisor.identity import clients

CALLS: list[tuple[str, str, dict[str, Any]]] = [
    ("s3", "list_objects_v2", {"Bucket": "b", "Prefix": "p/app.db/0000/", "StartAfter": "p/app.db/0000/x"}),
    ("s3", "get_object", {"Bucket": "b", "Key": "p/app.db.lease"}),
    ("s3", "put_object", {"Bucket": "b", "Key": "p/app.db.lease", "Body": b"{}", "IfMatch": "abc"}),
    ("s3", "put_object", {"Bucket": "b", "Key": "p/app.db.lease", "Body": b"{}", "IfNoneMatch": "*"}),
    ("s3", "head_object", {"Bucket": "b", "Key": "k"}),
    ("s3", "delete_object", {"Bucket": "b", "Key": "k"}),
    ("sts", "assume_role_with_web_identity", {"RoleArn": "arn:aws:iam::1:role/r", "RoleSessionName": "pod-a",
                                              "WebIdentityToken": "eyJhbGciOi.x.y", "DurationSeconds": 900}),
]
LIST_ANSWER = (b'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/'
               b'2006-03-01/"><Name>b</Name><Prefix>p/</Prefix><KeyCount>1</KeyCount><MaxKeys>1000</MaxKeys>'
               b'<IsTruncated>false</IsTruncated><Contents><Key>p/app.db/0000/0000000000000001-0000000000000001.ltx'
               b'</Key><LastModified>2026-11-29T05:00:00.000Z</LastModified><ETag>"x"</ETag><Size>10</Size>'
               b'<StorageClass>STANDARD</StorageClass></Contents></ListBucketResult>')


class _Raw(io.BytesIO):
    """What urllib3 hands botocore: a readable, streamable body."""

    def stream(self, **_: Any) -> list[bytes]:
        return [self.getvalue()]


STS_ANSWER = (Path(__file__).parent.parent / "fixtures/minio-sts/assume-role-with-web-identity.ok.xml").read_bytes()


def _session(loader: botocore.loaders.Loader) -> botocore.session.Session:
    s = botocore.session.get_session()
    s.register_component("data_loader", loader)
    return s


def _client(session: botocore.session.Session, service: str, endpoint: str | None) -> Any:
    config = Config(signature_version=UNSIGNED) if service == "sts" else Config(s3={"addressing_style": "path"})
    return session.create_client(service, region_name="us-east-1", endpoint_url=endpoint, config=config,
                                 aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret")


def _request(client: Any, method: str, params: dict[str, Any]) -> tuple[str, str, dict[str, str], bytes, Any]:
    seen: list[Any] = []

    def capture(request: Any, **_: Any) -> AWSResponse:
        seen.append(request)
        body = {"list_objects_v2": LIST_ANSWER, "assume_role_with_web_identity": STS_ANSWER}.get(method, b"")
        return AWSResponse(request.url, 200, {"ETag": '"e"'}, _Raw(body))

    client.meta.events.register_first("before-send", capture)
    answer = getattr(client, method)(**params)
    r = seen[0]
    headers = {k: v for k, v in r.headers.items() if k.lower() not in ("x-amz-date", "authorization",
                                                                       "amz-sdk-invocation-id", "user-agent")}
    body = r.body if isinstance(r.body, bytes) else (r.body.read() if hasattr(r.body, "read") else str(r.body).encode())
    answer.pop("ResponseMetadata", None)
    if "Body" in answer:
        answer["Body"] = answer["Body"].read()
    return r.method, r.url, headers, body, answer


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:9000", None])
def test_slim_clients_send_and_parse_exactly_what_full_ones_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              endpoint: str | None) -> None:
    monkeypatch.setattr(clients, "DATA_DIR", tmp_path / "data")
    clients.write_slim_data(tmp_path / "data")
    slim = _session(clients.SlimLoader([str(tmp_path / "data")]))
    full = _session(botocore.loaders.Loader())
    for service, method, params in CALLS:
        got = _request(_client(slim, service, endpoint), method, params)
        want = _request(_client(full, service, endpoint), method, params)
        assert got == want, (service, method)


def test_slim_files_are_small_versioned_and_replaced_whole(tmp_path: Path) -> None:
    target = tmp_path / "data"
    clients.write_slim_data(target)
    assert (target / "VERSION").read_text() == clients.stamp()
    assert clients.stamp().startswith(botocore.__version__ + " ")
    sizes = {p.name: p.stat().st_size for p in target.rglob("*.json")}
    assert set(sizes) == {"endpoints.json", "service-2.json"} and max(sizes.values()) < 200_000
    (target / "stale").write_text("x")
    clients.write_slim_data(target)  # a rewrite replaces the directory: nothing stale, nothing half-written
    assert not (target / "stale").exists() and not list(tmp_path.glob(".botocore-data-*"))


def test_a_slim_dir_of_another_botocore_version_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clients, "DATA_DIR", tmp_path / "data")
    clients.write_slim_data(tmp_path / "data")
    assert clients.slim_data_dir() == tmp_path / "data"
    (tmp_path / "data" / "VERSION").write_text("0.0.1")
    assert clients.slim_data_dir() is None


def test_a_slim_dir_cut_for_other_operations_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files cut before an operation was added lack it (the client would have no such method)."""
    monkeypatch.setattr(clients, "DATA_DIR", tmp_path / "data")
    fewer = {**clients.OPERATIONS, "s3": clients.OPERATIONS["s3"] - {"DeleteObjects"}}
    monkeypatch.setattr(clients, "OPERATIONS", fewer)
    clients.write_slim_data(tmp_path / "data")
    monkeypatch.undo()
    monkeypatch.setattr(clients, "DATA_DIR", tmp_path / "data")
    assert clients.slim_data_dir() is None


def test_every_operation_the_supervisor_calls_is_kept() -> None:
    """The operations called in supervisor/ (by method name) are all in the slim models."""
    import re

    from botocore import xform_name

    loader = botocore.loaders.Loader()
    operations = {xform_name(op) for service, version in (("s3", "2006-03-01"), ("sts", "2011-06-15"))
                  for op in loader.load_service_model(service, "service-2", version)["operations"]}
    source = "\n".join(p.read_text() for p in Path(clients.__file__).parents[1].rglob("*.py"))
    called = set(re.findall(r"\.([a-z_0-9]+)\(", source)) & operations
    called |= set(re.findall(r'get_paginator\("([a-z_0-9]+)"\)', source))
    kept = {xform_name(op) for ops in clients.OPERATIONS.values() for op in ops}
    assert called and called <= kept


def test_building_the_clients_does_not_walk_botocore_data(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore validates a service name by listing every service it ships (~900 directories, tens
    of milliseconds before a restore's first request): our loader looks at our two only."""
    import os

    listed: list[str] = []
    real_listdir = os.listdir

    def counting_listdir(path: Any = ".") -> list[str]:
        listed.append(str(path))
        return real_listdir(path)

    clients._session.cache_clear()
    monkeypatch.setattr(os, "listdir", counting_listdir)
    try:
        s = clients.session()
        s.create_client("sts", endpoint_url="http://127.0.0.1:9", region_name="us-east-1",
                        config=Config(signature_version=UNSIGNED))
        s.create_client("s3", endpoint_url="http://127.0.0.1:9", region_name="us-east-1",
                        aws_access_key_id="AK", aws_secret_access_key="SK")
    finally:
        clients._session.cache_clear()
    assert 0 < len(listed) < 30, f"{len(listed)} directories listed"
    with pytest.raises(botocore.exceptions.UnknownServiceError):
        s.create_client("iam", region_name="us-east-1", aws_access_key_id="AK", aws_secret_access_key="SK")


def test_threads_asking_for_the_session_at_once_share_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """The keeper reads the head start's answer while a thread preloads S3's model: a second
    session would load every model again (~15 ms before Litestream starts) and keep it twice."""
    import threading
    import time

    real = botocore.session.get_session

    def slow_session() -> botocore.session.Session:
        time.sleep(0.05)  # both threads inside the first call at once
        return real()

    clients._session.cache_clear()
    monkeypatch.setattr(botocore.session, "get_session", slow_session)
    got: list[object] = []
    try:
        threads = [threading.Thread(target=lambda: got.append(clients.session())) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        clients._session.cache_clear()
    assert len(got) == 4 and len({id(s) for s in got}) == 1
