"""MinIO's recorded S3 error answers, served over loopback HTTP to the replica listing: expired
or replaced temporary credentials mean "refresh", a policy denial means "access denied"."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor import replica
from supervisor.config import Replica
from supervisor.credentials import Credentials
from supervisor.errors import ExitCode, Unreachable

FIXTURES = Path(__file__).parent.parent / "fixtures" / "minio-sts"


@pytest.fixture
def s3() -> Iterator[tuple[Replica, list[tuple[int, bytes]]]]:
    answers: list[tuple[int, bytes]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = answers[0]
            self.send_response(status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{httpd.server_address[1]}"
        yield Replica("example-bucket", "app.db", endpoint, "us-east-1", True), answers
    finally:
        httpd.shutdown()
        httpd.server_close()


def recorded(name: str) -> tuple[int, bytes]:
    first, _, body = (FIXTURES / name).read_text().partition("\n")
    return int(first.split()[2]), b'<?xml version="1.0" encoding="UTF-8"?>\n' + body.encode()


def client(r: Replica):
    now = time.time()
    creds = Credentials("EXAMPLEACCESSKEY0001", "example-secret-key-0001", "example-session-token-0001",
                        now + 900, now)
    return replica.s3_client(creds, r, fallback_endpoint=None, region="us-east-1", ca_bundle=None, timeout_seconds=3)


@pytest.mark.parametrize(("name", "stale"), [
    ("s3-error.InvalidAccessKeyId.xml", True),
    ("s3-error.InvalidTokenId.xml", True),
    ("s3-error.AccessDenied.xml", False),
    ("s3-error.SignatureDoesNotMatch.xml", False),
])
def test_minio_s3_errors(s3, name: str, stale: bool) -> None:
    r, answers = s3
    answers.append(recorded(name))
    with pytest.raises(Exception) as e:
        replica.layout(client(r), r)
    if stale:
        assert isinstance(e.value, replica.StaleCredentials)
    else:
        assert e.value.exit_code == ExitCode.ACCESS_DENIED
    assert "example-secret-key-0001" not in str(e.value) and "\n" not in str(e.value)


def test_no_such_bucket_and_server_errors(s3) -> None:
    r, answers = s3
    answers.append((404, b"<Error><Code>NoSuchBucket</Code><Message>No such bucket</Message></Error>"))
    with pytest.raises(Exception) as e:
        replica.layout(client(r), r)
    assert e.value.exit_code == ExitCode.NO_SUCH_BUCKET and "example-bucket" in str(e.value)
    answers[0] = (503, b"<Error><Code>SlowDown</Code></Error>")
    with pytest.raises(Unreachable):
        replica.layout(client(r), r)
