from __future__ import annotations

import io
import json

import structlog

from supervisor.core import logs, redact


def test_registered_secrets_and_jwts_are_redacted_everywhere() -> None:
    stream = io.StringIO()
    logs.configure("debug", "json", stream)
    logs.secrets.add("SECRETKEY-1234567890")
    jwt_like = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    log = logs.get_logger("test")
    log.info("event", detail="key SECRETKEY-1234567890 here", nested={"a": ["SECRETKEY-1234567890"]},
             raw=jwt_like, session_token="whatever-value", token_file="/var/run/token")
    line = json.loads(stream.getvalue())
    text = stream.getvalue()
    assert "SECRETKEY-1234567890" not in text and jwt_like not in text and "whatever-value" not in text
    assert line["detail"] == "key [redacted] here" and line["token_file"] == "/var/run/token"
    assert line["component"] == "test" and line["level"] == "info"


def test_level_filter_and_console_format() -> None:
    stream = io.StringIO()
    logs.configure("warning", "console", stream)
    log = logs.get_logger("test")
    log.info("hidden")
    log.warning("shown", a=1)
    out = stream.getvalue()
    assert "hidden" not in out and "shown" in out and "a=1" in out


def test_capture_logs_sees_events() -> None:
    logs.configure("debug", "json", io.StringIO())
    with structlog.testing.capture_logs() as captured:
        logs.get_logger("x").info("hello", n=1)
    assert captured[0]["event"] == "hello"


def test_registry_keeps_only_what_can_still_appear() -> None:
    """Item 26: the registry grew with every refresh and was scanned on every line."""
    registry = redact.SecretRegistry()
    for i in range(100):
        registry.add(f"secret-key-{i:04d}", f"session-token-{i:04d}", slot="credentials")
        registry.add(f"jwt-token-value-{i:04d}", slot="token")
    assert len(registry) == 6  # current and previous of each slot
    assert registry.redact("secret-key-0099 secret-key-0098") == "[redacted] [redacted]"
    assert registry.redact("secret-key-0097") == "secret-key-0097"
