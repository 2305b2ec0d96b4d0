"""The secret values that must never be shown, and the one function that removes them from text.

Kept apart from logging (and free of its imports) so the first STS exchange, sent before the
logging library is loaded, registers the token like everything else does.
"""

from __future__ import annotations

import re
import threading

REDACTED = "[redacted]"
# Three base64url segments starting with a JSON header: a JWT (the SA token, MinIO session tokens).
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")


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
