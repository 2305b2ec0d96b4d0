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
from collections.abc import Iterable, MutableMapping
from typing import Any

from supervisor.core.redact import REDACTED, secrets

_SECRET_KEYS = re.compile(r"(token|secret|password|authorization|session)", re.IGNORECASE)
# Keys whose names contain "token" but whose values are safe and useful to see.
_SAFE_KEYS = frozenset({"token_file", "token_rotations", "token_path", "token_fingerprint", "session_name"})


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
    import structlog

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


class _Logger:
    """structlog's logger for one component, looked up on first use: importing structlog (and the
    asyncio it loads, ~35 ms) waits until something is logged or configure() runs, so the first
    STS exchange can leave before it (supervisor/identity/headstart.py)."""

    __slots__ = ("_logger", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._logger: Any = None

    def __getattr__(self, attr: str) -> Any:
        if self._logger is None:
            import structlog

            self._logger = structlog.get_logger(component=self._name)  # binds on first use, after configure()
        return getattr(self._logger, attr)


def get_logger(name: str) -> Any:
    return _Logger(name)
