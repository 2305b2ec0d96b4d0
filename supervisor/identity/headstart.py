"""The first STS exchange, sent while the rest of the program is still being imported.

Python's start-up and imports (botocore, asyncio, the restore or sidecar machinery) take longer
than STS's round trip, and both stand between a pod's start and Litestream's: sent first, the
request travels while the imports run. It is sent as plain HTTP (supervisor/identity/stsquery.py), before
botocore is even imported; botocore's parser reads the answer once the keeper takes it.

The keeper takes the answer only for the identical request it would send itself (endpoint, role,
session name and lifetime, token, session policy), as its own first exchange: one exchange per
start, STS's refusals reported exactly as the keeper's own. Anything that stops the head start
before its request is sent (no token yet, a config error) is left for the command to report in
its own words; a request that got no answer (connection refused, TLS, timeout) is sent again by
the keeper through botocore, which reports it as it would have.
"""

from __future__ import annotations

import time
from concurrent.futures import Future
from dataclasses import dataclass, field

from supervisor.core.logs import get_logger
from supervisor.core.settings import AwsSettings, Settings, require_web_identity
from supervisor.core.threads import DaemonThreads
from supervisor.identity import stsquery

log = get_logger("headstart")


@dataclass(frozen=True)
class Request:
    """Everything an exchange's answer depends on."""

    aws: AwsSettings
    endpoint: str
    role_arn: str
    token: str = field(repr=False)  # compared, never shown (the registry redacts it anyway)
    policy: str | None


@dataclass(frozen=True)
class HeadStart:
    request: Request
    answer: Future[stsquery.Answer]
    sent: float  # time.monotonic() when the request was handed to its thread


_pending: HeadStart | None = None
_skipped: str | None = None  # why nothing was sent: logged by take(), once logging is configured


def begin(settings: Settings) -> None:
    """Send the first exchange now, in a daemon thread; the keeper picks its answer up."""
    global _pending, _skipped
    from supervisor.identity import token as tokens
    from supervisor.identity.scope import session_policy
    from supervisor.litestream import config as lsconfig

    if stsquery.proxied(settings.environment):
        _skipped = "proxy"  # botocore decides whether and how to go through it
        return
    try:
        config = lsconfig.load_for(settings)
        role_arn, token_file = require_web_identity(settings.aws)
        token = tokens.read(token_file)
        endpoint = stsquery.sts_endpoint(settings, config)
        policy = session_policy(config.databases) if settings.session_policy else None
        body = stsquery.form(stsquery.params(settings.aws, role_arn, token.value, policy))
    except Exception as e:  # noqa: BLE001 (the command meets the same problem and reports it)
        _skipped = type(e).__name__
        return
    request = Request(settings.aws, endpoint, role_arn, token.value, policy)
    sent = time.monotonic()
    answer = DaemonThreads().submit(stsquery.send, endpoint, body, settings.aws)
    _pending = HeadStart(request, answer, sent)


def take(request: Request) -> HeadStart | None:
    """The head start, once, if it sent exactly `request`; otherwise None (its answer unused)."""
    global _pending, _skipped
    pending, _pending = _pending, None
    if pending is None:
        if _skipped is not None:
            log.debug("sts_head_start_skipped", error=_skipped)
            _skipped = None
        return None
    if pending.request != request:
        log.debug("sts_head_start_unused", detail="the request differs from the one sent ahead")
        return None
    return pending
