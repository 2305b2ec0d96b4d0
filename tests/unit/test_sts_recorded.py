"""MinIO's recorded STS answers (shared/fixtures/minio-sts), served over real HTTP on loopback,
through the same botocore client the product uses: parsing and failure classification.

Every answer is also read the head start's way (sent as plain HTTP, parsed by botocore's parser):
the same request on the wire, and the same credentials or the same error, word for word."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from supervisor.core.errors import CredentialsRefused, Unreachable
from supervisor.core.settings import AwsSettings
from supervisor.identity import sts, stsquery
from supervisor.identity.token import Token
from tests.unit import recorded

TOKEN = Token("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", {"sub": "x", "aud": ["sts.amazonaws.com"],
                                                           "exp": time.time() + 3600})


@pytest.fixture
def server() -> Iterator[tuple[str, recorded.Recorder]]:
    with recorded.serve() as recorder:
        yield recorder.url, recorder


def aws(endpoint: str, duration: int | None = None) -> AwsSettings:
    return AwsSettings(role_arn="arn:minio:iam:::role/x", token_file=None, session_name="pod-0",
                       sts_endpoint=endpoint, s3_endpoint=None, region="us-east-1", ca_bundle=None,
                       duration_seconds=duration, sts_timeout_seconds=3)


def call(endpoint: str, duration: int | None = None):
    settings = aws(endpoint, duration)
    return sts.exchange(sts.new_client(settings, endpoint), settings, endpoint, "arn:minio:iam:::role/x", TOKEN)


def call_ahead(endpoint: str, duration: int | None = None):
    """As the head start sends it and the keeper reads its answer."""
    settings = aws(endpoint, duration)
    body = stsquery.form(stsquery.params(settings, "arn:minio:iam:::role/x", TOKEN.value, None))
    return sts.from_answer(stsquery.send(endpoint, body, settings), TOKEN, endpoint, settings.audience)


BOTH = pytest.mark.parametrize("call", [call, call_ahead], ids=["botocore", "head-start"])


@pytest.mark.parametrize("duration", [None, 900])
def test_the_head_start_sends_what_botocore_sends(server, duration: int | None) -> None:
    url, rec = server
    rec.answer = recorded.load("assume-role-with-web-identity.ok.xml")
    call(url, duration)
    call_ahead(url, duration)
    (botocore_headers, botocore_form), (ours_headers, ours_form) = rec.requests
    assert ours_form == botocore_form
    assert ours_headers["Content-Type"] == botocore_headers["Content-Type"]
    assert rec.paths == ["/", "/"]


@BOTH
def test_success_answer_is_parsed_and_request_is_unsigned(server, call) -> None:
    url, rec = server
    rec.answer = recorded.load("assume-role-with-web-identity.ok.xml")
    creds = call(url)
    assert creds.access_key_id == "EXAMPLEACCESSKEY0001"
    assert creds.expiration == 1767229200.0  # 2026-01-01T01:00:00Z: trusted from the answer
    headers, form = rec.requests[0]
    assert "Authorization" not in headers  # MinIO routes a signed POST to AssumeRole
    assert form["Action"] == ["AssumeRoleWithWebIdentity"] and form["Version"] == ["2011-06-15"]
    assert form["RoleSessionName"] == ["pod-0"] and "DurationSeconds" not in form
    assert "EXAMPLESECRETACCESSKEY" not in repr(creds)


@BOTH
def test_duration_is_sent_only_when_asked(server, call) -> None:
    url, rec = server
    rec.answer = recorded.load("assume-role-with-web-identity.ok.xml")
    call(url, duration=900)
    assert rec.requests[0][1]["DurationSeconds"] == ["900"]


@pytest.mark.parametrize(("name", "kind", "words"), [
    ("sts-error.AccessDenied.xml", CredentialsRefused, "AccessDenied"),
    ("sts-error.InvalidParameterValue.xml", CredentialsRefused, "azp"),
    ("sts-error.ExpiredToken.xml", CredentialsRefused, "ExpiredToken"),
    ("sts-error.MissingParameter.xml", CredentialsRefused, "MissingParameter"),
    ("variants/sts-error.InvalidParameterValue.jwt-expired.xml", CredentialsRefused, "expired"),
    ("variants/sts-error.InvalidParameterValue.signed-request.xml", CredentialsRefused, "InvalidParameterValue"),
    ("variants/sts-error.InvalidParameterValue.aud-missing.xml", CredentialsRefused, "InvalidParameterValue"),
    ("sts-error.InternalError.xml", Unreachable, "InternalError"),
    ("sts-error.STSNotInitialized.xml", Unreachable, "STSNotInitialized"),
    ("sts-error.STSIAMNotInitialized.xml", Unreachable, "STSIAMNotInitialized"),
])
def test_minio_errors_are_classified(server, name: str, kind: type, words: str) -> None:
    url, rec = server
    rec.answer = recorded.load(name)
    with pytest.raises(kind) as e:
        call(url)
    message = str(e.value)
    assert words.lower() in message.lower() and "\n" not in message and TOKEN.value not in message
    with pytest.raises(kind) as ahead:
        call_ahead(url)
    assert str(ahead.value) == message


@BOTH
@pytest.mark.parametrize("body", [b"<html>MinIO Console</html> SECRETISH", b"",
                                  b"<AssumeRoleWithWebIdentityResponse><Other/></AssumeRoleWithWebIdentityResponse>"])
def test_a_200_that_is_not_an_sts_answer_is_one_line_without_the_body(server, call, body: bytes) -> None:
    """An endpoint that is not STS (a console, a proxy's page) answering 200: botocore's parser raised
    its own error (quoting the body) or a KeyError, which reached the command as a traceback."""
    url, rec = server
    rec.answer = (200, body)
    with pytest.raises(Unreachable) as e:
        call(url)
    message = str(e.value)
    assert "not an STS answer" in message and "--sts-endpoint" in message and "\n" not in message
    assert "SECRETISH" not in message and "Console" not in message


@BOTH
def test_rgw_style_error_without_code_uses_http_status(server, call) -> None:
    url, rec = server
    rec.answer = (403, b'<?xml version="1.0"?><Error><Code>AccessDenied</Code><RequestId>x</RequestId></Error>')
    with pytest.raises(CredentialsRefused, match="HTTP 403"):
        call(url)
    rec.answer = (503, b"<Error><Code>ServiceUnavailable</Code></Error>")
    with pytest.raises(Unreachable, match="503"):
        call(url)


def test_connection_refused_is_transient() -> None:
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(Unreachable, match="unreachable"):
        call(f"http://127.0.0.1:{port}")
