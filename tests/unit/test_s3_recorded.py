"""MinIO's recorded S3 error answers, served over loopback HTTP to the replica listing: expired
or replaced temporary credentials mean "refresh", a policy denial means "access denied"."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.core.errors import ExitCode, SupervisorError, Unreachable
from supervisor.identity import s3 as clients
from supervisor.identity.credentials import Credentials
from supervisor.litestream.config import Replica
from supervisor.replica import layout as replica
from tests.unit import recorded


@pytest.fixture
def s3() -> Iterator[tuple[Replica, recorded.Recorder]]:
    with recorded.serve() as recorder:
        yield Replica("example-bucket", "app.db", recorder.url, "us-east-1", True), recorder


def client(r: Replica):
    now = time.time()
    creds = Credentials("EXAMPLEACCESSKEY0001", "example-secret-key-0001", "example-session-token-0001",
                        now + 900, now)
    return clients.s3_client(creds, r, ca_bundle=None, timeout_seconds=3)


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


@pytest.mark.parametrize("body", [b"<html>MinIO Console SECRETISH</html>", b""])
def test_an_endpoint_that_is_not_s3_is_one_line_and_retried(s3, body: bytes) -> None:
    """A replica endpoint pointing at a console or a proxy's page, answering 200: the listing quoted
    the body, and the lease's read and write died on a KeyError (a traceback from restore/check)."""
    from supervisor.replica.lease import Identity, LeaseBody, LeaseStore

    r, recorder = s3
    recorder.answer = (200, body)
    store = LeaseStore(lambda: client(r), r)
    now = time.time()
    lease = LeaseBody(Identity("pod", None, None, "i").holder, None, "i", now, now, 30)
    for call in (lambda: replica.layout(client(r), r), store.read, lambda: store.write(lease)):
        with pytest.raises(Unreachable) as e:
            call()
        message = str(e.value)
        assert "not an S3 answer" in message and "endpoint" in message and "\n" not in message
        assert "SECRETISH" not in message and "Console" not in message


@pytest.mark.parametrize("lease", ["on", "off"])
@pytest.mark.parametrize("page", [b"<html><body>MinIO Console</body></html>",
                                  b"<!doctype html><html><body>MinIO Console</body></html>"])
def test_restore_never_starts_fresh_on_an_endpoint_that_is_not_s3(tmp_path, lease: str, page: bytes) -> None:
    """Fail closed: MinIO's console port answers 200 with a web page to anything. Read as an empty
    listing, restore (lease off) logged fresh_start and exited 0 with no database: the app would
    start empty beside a replica it never saw. With the lease on it died on a traceback."""
    import json
    import subprocess
    import sys

    from tests.unit.test_token import fake_jwt

    token = tmp_path / "token"
    token.write_text(fake_jwt(sub="system:serviceaccount:a:b", aud="sts.amazonaws.com", exp=time.time() + 600))
    with recorded.serve() as sts, recorded.serve() as console:
        sts.answer = recorded.ok_answer()
        console.answer = (200, page)
        cfg = tmp_path / "litestream.yml"
        cfg.write_text(f"dbs:\n  - path: {tmp_path}/app.db\n    replica:\n      type: s3\n      bucket: b\n"
                       f"      path: app\n      endpoint: {console.url}\n")
        run = subprocess.run([sys.executable, "-OO", "-m", "supervisor", "restore", "--config", str(cfg),
                              "--sts-endpoint", sts.url, "--lease", lease, "--timeout", "2"],
                             env={"AWS_ROLE_ARN": "arn:minio:iam:::role/x", "AWS_WEB_IDENTITY_TOKEN_FILE": str(token),
                                  "POD_UID": "u", "LITESTREAM_SUPERVISOR_LOG_FORMAT": "json", "PATH": "/usr/bin:/bin",
                                  "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
                             capture_output=True, text=True, cwd=tmp_path, timeout=60)
    events = [json.loads(line) for line in run.stderr.splitlines() if line.startswith("{")]
    assert run.returncode == ExitCode.UNREACHABLE, run.stderr[-2000:]
    assert not any(e.get("event") == "fresh_start" for e in events)
    assert "Traceback" not in run.stderr and not (tmp_path / "app.db").exists()
    assert events[-1]["error"].startswith("s3://b/app") and "Console" not in run.stderr
    # botocore itself turns a 200 it cannot parse into a 500 ("not available (500)"); one it can
    # parse, as an empty listing or an object without ETag, is ours to refuse
    assert "not an S3 answer" in events[-1]["error"] or page.startswith(b"<!doctype")
