"""The loopback credentials endpoint Litestream's AWS SDK polls (container-credentials protocol).

The child gets AWS_CONTAINER_CREDENTIALS_FULL_URI=http://127.0.0.1:<port>/credentials and
AWS_CONTAINER_AUTHORIZATION_TOKEN=<random>; the SDK re-fetches before expiry, so a refresh
never restarts Litestream. Only 127.0.0.1 is bound; the bearer token is compared in constant
time; a missing or wrong one gets 401/403 and no hint of the credentials.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import secrets as random_secrets
from collections.abc import Callable
from dataclasses import dataclass

from supervisor.core import httpd
from supervisor.core.logs import get_logger
from supervisor.core.redact import secrets
from supervisor.identity.credentials import Credentials

log = get_logger("broker")
PATH = "/credentials"


@dataclass(frozen=True, repr=False)
class BrokerAddress:
    url: str
    authorization: str

    def __repr__(self) -> str:
        return f"BrokerAddress(url={self.url!r})"


class CredentialsBroker:
    def __init__(self, current: Callable[[], Credentials | None]) -> None:
        self._current = current
        self.authorization = random_secrets.token_urlsafe(32)
        secrets.add(self.authorization, slot="broker")
        self._server: asyncio.Server | None = None
        self.requests = 0

    async def handle(self, request: httpd.Request) -> httpd.Response:
        if request.path != PATH:
            return httpd.Response(404, b"not found\n")
        given = request.headers.get("authorization", "")
        if not given:
            return httpd.Response(401, b"missing authorization\n")
        if not hmac.compare_digest(given.encode(), self.authorization.encode()):
            return httpd.Response(403, b"wrong authorization\n")
        creds = self._current()
        if creds is None or creds.seconds_left() <= 0:
            return httpd.Response(503, b"no valid credentials yet\n")
        self.requests += 1
        return httpd.Response(200, json.dumps(creds.container_json()).encode(), "application/json")

    async def start(self) -> BrokerAddress:
        self._server = await httpd.start(self.handle, "127.0.0.1", 0)
        port = httpd.bound_port(self._server)
        log.debug("broker_listening", port=port)
        return BrokerAddress(f"http://127.0.0.1:{port}{PATH}", self.authorization)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
