from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from supervisor.core.errors import LitestreamMissing
from supervisor.litestream import binary as litestream
from supervisor.litestream.process import parse_line, relay, spawn


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
    level, msg, fields = parse_line(
        'time=2026-01-01T00:00:00Z level=WARN msg="sync error" db=/data/app.db err="dial tcp: refused"')
    assert (level, msg, fields) == ("warning", "sync error", {"ls.db": "/data/app.db", "err": "dial tcp: refused"})
    assert parse_line("Error: boom") == ("info", "Error: boom", {})


def test_the_lines_own_level_wins_over_a_later_level_attribute() -> None:
    """slog prints `level=ERROR msg=... level=1`: the first is the line's level (issue 11, item 9)."""
    level, msg, fields = parse_line('time=x level=ERROR msg="compaction failed" level=1 err=boom')
    assert (level, msg) == ("error", "compaction failed") and fields == {"ls.level": "1", "err": "boom"}


def test_relay_keeps_every_field_even_one_named_like_ours() -> None:
    """A Litestream `db=` field beside our own db context used to be a TypeError (issue 11, item 9)."""
    from structlog.testing import capture_logs

    from supervisor.core.logs import get_logger

    async def scenario() -> None:
        stream = asyncio.StreamReader()
        stream.feed_data(b'time=t level=DEBUG msg="sync" db=/data/app.db txid=7\n'
                         b'time=t level=ERROR msg="bad" level=2\n')
        stream.feed_eof()
        await relay(stream, get_logger("test"), {"db": "/data/app.db"})

    with capture_logs() as logs:
        asyncio.run(scenario())
    assert [(e["log_level"], e["msg"]) for e in logs] == [("debug", "sync"), ("error", "bad")]
    assert logs[0]["db"] == "/data/app.db" and logs[0]["ls.db"] == "/data/app.db" and logs[0]["txid"] == "7"


def test_a_binary_that_cannot_be_executed_is_litestream_missing(tmp_path: Path) -> None:
    """exec format error must be one line and exit 11, never a hang (issue 11, item 7)."""
    bad = tmp_path / "litestream"
    bad.write_bytes(b"\x7fELF garbage")
    bad.chmod(0o755)
    with pytest.raises(LitestreamMissing, match="cannot run"):
        asyncio.run(spawn([str(bad), "replicate"], {}))


def test_missing_binary_is_named(tmp_path: Path) -> None:
    with pytest.raises(LitestreamMissing, match="--litestream"):
        litestream.resolve(str(tmp_path / "litestream"))
    with pytest.raises(LitestreamMissing, match="not found"):
        litestream.resolve("litestream-does-not-exist")


def test_real_binary_version() -> None:
    assert litestream.version("litestream").startswith("0.5.17")
