"""Structured logging: configured once by the CLI, with a redaction step no event can skip.

JSON lines when stderr is not a TTY (kubectl logs, log shippers), key=value on a TTY.
Secrets are redacted two ways: values registered with `secrets.add()` (the token, secret key
and session token as they are obtained) are replaced wherever they appear, and anything that
looks like a JWT or sits under a secret-sounding key is masked even if it was never registered.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog

REDACTED = "[redacted]"
_SECRET_KEYS = re.compile(r"(token|secret|password|authorization|session)", re.IGNORECASE)
# Three base64url segments starting with a JSON header: a JWT (the SA token, MinIO session tokens).
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
# Keys whose names contain "token" but whose values are safe and useful to see.
_SAFE_KEYS = frozenset({"token_file", "token_rotations", "token_path", "token_fingerprint", "session_name"})


class SecretRegistry:
    """The secret values that can still appear; redact() removes every one of them from a string.

    Values are kept per slot ("token", "credentials", ...): the current one and the one before
    (a log line about the previous refresh may still be on its way), never an ever-growing set
    scanned on every line.
    """

    KEEP = 2

    def __init__(self) -> None:
        self._slots: dict[str, list[tuple[str, ...]]] = {}
        self._values: tuple[str, ...] = ()
        self._lock = threading.Lock()

    def add(self, *values: str | None, slot: str = "other") -> None:
        kept = tuple(v for v in values if v and len(v) >= 8)
        if not kept:
            return
        with self._lock:
            history = self._slots.setdefault(slot, [])
            if kept in history:
                history.remove(kept)
            history.append(kept)
            del history[:-self.KEEP]
            self._values = tuple(sorted({v for h in self._slots.values() for vs in h for v in vs},
                                        key=len, reverse=True))

    def __len__(self) -> int:
        return len(self._values)

    def redact(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, REDACTED)
        return _JWT.sub(REDACTED, text)


secrets = SecretRegistry()


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return secrets.redact(value)
    if isinstance(value, dict):
        return {k: _scrub_item(k, v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub(v) for v in value]
    if isinstance(value, BaseException):
        return secrets.redact(str(value))
    return value


def _scrub_item(key: str, value: Any) -> Any:
    if isinstance(key, str) and key not in _SAFE_KEYS and _SECRET_KEYS.search(key) and isinstance(value, str):
        return REDACTED
    return _scrub(value)


def redact_processor(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        event_dict[key] = _scrub_item(key, event_dict[key])
    return event_dict


LEVELS = ("debug", "info", "warning", "error")


def configure(level: str = "info", fmt: str = "auto", stream: Any = None) -> None:
    """Configure structlog once, at start-up. fmt: auto | json | console."""
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "console" if getattr(stream, "isatty", lambda: False)() else "json"
    renderer: Any
    renderer = structlog.dev.ConsoleRenderer(colors=False) if fmt == "console" else structlog.processors.JSONRenderer()
    processors: Iterable[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact_processor,
        renderer,
    ]
    structlog.configure(
        processors=list(processors),
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> Any:
    return structlog.get_logger(component=name)  # lazy: binds on first use, after configure()
