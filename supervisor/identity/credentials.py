"""Temporary credentials, and the two JSON shapes they are handed out in."""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass
from typing import Any

from supervisor.core.redact import secrets


def _iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, repr=False)
class Credentials:
    access_key_id: str
    secret_access_key: str
    session_token: str
    expiration: float  # unix seconds, from the STS answer (never from our request)
    obtained_at: float
    clock_skew_seconds: float = 0.0  # our clock minus the STS server's (from its Date header)

    def __post_init__(self) -> None:
        secrets.add(self.secret_access_key, self.session_token, slot="credentials")

    def __repr__(self) -> str:
        return f"Credentials(access_key_id={self.access_key_id!r}, expiration={_iso(self.expiration)})"

    @property
    def lifetime_seconds(self) -> float:
        return self.expiration - self.obtained_at

    def seconds_left(self, now: float | None = None) -> float:
        return self.expiration - (time.time() if now is None else now)

    @property
    def expiration_iso(self) -> str:
        return _iso(self.expiration)

    def container_json(self) -> dict[str, Any]:
        """The AWS container-credentials endpoint answer (ECS / EKS Pod Identity shape)."""
        return {"AccessKeyId": self.access_key_id, "SecretAccessKey": self.secret_access_key,
                "Token": self.session_token, "Expiration": self.expiration_iso}

    def process_json(self) -> dict[str, Any]:
        """The AWS `credential_process` answer."""
        return {"Version": 1, "AccessKeyId": self.access_key_id,
                "SecretAccessKey": self.secret_access_key, "SessionToken": self.session_token,
                "Expiration": self.expiration_iso}
