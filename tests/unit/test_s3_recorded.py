"""MinIO's recorded S3 error answers, served over loopback HTTP to the replica listing: expired
or replaced temporary credentials mean "refresh", a policy denial means "access denied"."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from supervisor import replica
from supervisor.config import Replica
from supervisor.credentials import Credentials
from supervisor.errors import ExitCode, SupervisorError, Unreachable
from tests.unit import recorded


@pytest.fixture
def s3() -> Iterator[tuple[Replica, recorded.Recorder]]:
    with recorded.serve() as recorder:
        yield Replica("example-bucket", "app.db", recorder.url, "us-east-1", True), recorder


def client(r: Replica):
    now = time.time()
    creds = Credentials("EXAMPLEACCESSKEY0001", "example-secret-key-0001", "example-session-token-0001",
                        now + 900, now)
    return replica.s3_client(creds, r, ca_bundle=None, timeout_seconds=3)


@pytest.mark.parametrize(("name", "stale"), [
    ("s3-error.InvalidAccessKeyId.xml", True),
    ("s3-error.InvalidTokenId.xml", True),
    ("s3-error.AccessDenied.xml", False),
    ("s3-error.SignatureDoesNotMatch.xml", False),
])
def test_minio_s3_errors(s3, name: str, stale: bool) -> None:
    r, recorder = s3
    recorder.answer = recorded.load(name)
    with pytest.raises(SupervisorError) as e:
        replica.layout(client(r), r)
    if stale:
        assert isinstance(e.value, replica.StaleCredentials)
    else:
        assert e.value.exit_code == ExitCode.ACCESS_DENIED
    assert "example-secret-key-0001" not in str(e.value) and "\n" not in str(e.value)


def test_no_such_bucket_and_server_errors(s3) -> None:
    r, recorder = s3
    recorder.answer = (404, b"<Error><Code>NoSuchBucket</Code><Message>No such bucket</Message></Error>")
    with pytest.raises(SupervisorError) as e:
        replica.layout(client(r), r)
    assert e.value.exit_code == ExitCode.NO_SUCH_BUCKET and "example-bucket" in str(e.value)
    recorder.answer = (503, b"<Error><Code>SlowDown</Code></Error>")
    with pytest.raises(Unreachable):
        replica.layout(client(r), r)
