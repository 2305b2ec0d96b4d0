from __future__ import annotations

from pathlib import Path

import pytest

from supervisor import litestream
from supervisor.errors import LitestreamMissing


def test_child_env_strips_what_would_outrank_the_endpoint() -> None:
    parent = {"PATH": "/bin", "AWS_ACCESS_KEY_ID": "A", "AWS_SECRET_ACCESS_KEY": "S", "AWS_SESSION_TOKEN": "T",
              "AWS_ROLE_ARN": "r", "AWS_WEB_IDENTITY_TOKEN_FILE": "/t", "AWS_CA_BUNDLE": "/ca.pem",
              "AWS_PROFILE": "p", "AWS_REGION": "eu", "AWS_ENDPOINT_URL_S3": "http://s3",
              "LITESTREAM_SUPERVISOR_ROLE_ARN": "r", "LITESTREAM_ACCESS_KEY_ID": "A"}
    env = litestream.child_env(parent, "http://127.0.0.1:1/credentials", "auth", Path("/ca.pem"))
    for gone in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ROLE_ARN",
                 "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CA_BUNDLE", "AWS_PROFILE", "LITESTREAM_SUPERVISOR_ROLE_ARN",
                 "LITESTREAM_ACCESS_KEY_ID"):
        assert gone not in env
    assert env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] == "http://127.0.0.1:1/credentials"
    assert env["AWS_CONTAINER_AUTHORIZATION_TOKEN"] == "auth"
    assert env["SSL_CERT_FILE"] == "/ca.pem" and env["AWS_REGION"] == "eu" and env["PATH"] == "/bin"
    assert env["AWS_ENDPOINT_URL_S3"] == "http://s3"
    assert "AWS_CA_BUNDLE" in parent  # pure: the parent is untouched


def test_parse_logfmt_lines() -> None:
    level, msg, fields = litestream.parse_line(
        'time=2026-01-01T00:00:00Z level=WARN msg="sync error" db=/data/app.db err="dial tcp: refused"')
    assert (level, msg, fields) == ("warning", "sync error", {"db": "/data/app.db", "err": "dial tcp: refused"})
    assert litestream.parse_line("Error: boom") == ("info", "Error: boom", {})


def test_missing_binary_is_named(tmp_path: Path) -> None:
    with pytest.raises(LitestreamMissing, match="--litestream"):
        litestream.resolve(str(tmp_path / "litestream"))
    with pytest.raises(LitestreamMissing, match="not found"):
        litestream.resolve("litestream-does-not-exist")


def test_real_binary_version() -> None:
    assert litestream.version("litestream").startswith("0.5.17")
