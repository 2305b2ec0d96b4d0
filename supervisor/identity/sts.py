"""AssumeRoleWithWebIdentity: one exchange, and what its failure means.

The request is unsigned (MinIO routes a signed one to plain AssumeRole), always carries a
RoleSessionName (AWS and Ceph require one) and only carries DurationSeconds when asked to.
Failures are classified so callers know whether to stop or retry:
- `CredentialsRefused`: STS answered no (bad token, audience, role, policy). Same token, same answer.
- `Unreachable`: connection, timeout, 5xx, throttling, "not initialised": retry with backoff.
MinIO answers STS-style XML with a code; Ceph RGW answers S3-style XML that botocore cannot
read a code from, so the HTTP status decides there.
"""

from __future__ import annotations

import email.utils
import time
from typing import Any

from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, SSLError
from botocore.parsers import ResponseParserError, create_parser

from supervisor.core.errors import CredentialsRefused, Unreachable
from supervisor.core.redact import secrets
from supervisor.core.settings import AwsSettings
from supervisor.identity.clients import session
from supervisor.identity.credentials import Credentials
from supervisor.identity.stsquery import ACTION, Answer, params
from supervisor.identity.token import Token

TRANSIENT_CODES = frozenset({
    "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException",
    "IDPCommunicationError", "ServiceUnavailable", "InternalError", "InternalFailure",
    "STSNotInitialized", "STSIAMNotInitialized", "SlowDown", "RequestTimeout",
})
# Below this, a difference between our clock and the server's Date header is network delay and
# the Date header's one-second resolution; above it, Expiration is moved onto our clock.
SKEW_TOLERANCE_SECONDS = 5.0
# Codes that mean "this token will not do": the fix is a new or different token.
TOKEN_CODES = frozenset({"ExpiredToken", "InvalidIdentityToken", "InvalidParameterValue"})


def new_client(aws: AwsSettings, endpoint: str) -> Any:
    return session().create_client(
        "sts",
        endpoint_url=endpoint,
        region_name=aws.region,
        verify=str(aws.ca_bundle) if aws.ca_bundle else True,
        config=Config(
            signature_version=UNSIGNED,
            # botocore refuses DurationSeconds < 900 client-side; servers decide their own bounds.
            parameter_validation=False,
            retries={"total_max_attempts": 1},  # the keeper owns retries and backoff
            connect_timeout=aws.sts_timeout_seconds,
            read_timeout=aws.sts_timeout_seconds,
        ),
    )


def _hint(token: Token, code: str | None, status: int, audience: str) -> str:
    hints = []
    left = token.seconds_left()
    if left is not None and left <= 0:
        hints.append("the token has expired")
    nbf = token.not_before
    if nbf is not None and nbf > time.time() + 1:
        hints.append("the token is not valid yet (check the node's clock)")
    if audience not in token.audiences:
        hints.append(f"the token's aud {token.audiences} lacks {audience!r} (set the projected "
                     "token's audience to the STS client id)")
    if not hints:
        if status == 403 or code == "AccessDenied":
            hints.append("check the role's trust policy (issuer, audience, sub) and the OIDC provider's "
                         "thumbprint, and that the role ARN is right")
        else:
            hints.append("check the token's issuer, audience and expiry against the STS OpenID settings")
    return "; ".join(hints)


def classify(error: Exception, token: Token, endpoint: str, audience: str) -> Exception:
    """Turn a botocore failure into CredentialsRefused or Unreachable with a one-line message."""
    if isinstance(error, ClientError):
        response = error.response
        status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        err = response.get("Error") or {}
        code = err.get("Code") or None
        if code == "Unknown":
            code = None
        message = secrets.redact(str(err.get("Message") or "").strip())
        if message in ("None", "Unknown"):
            message = ""
        said = f"HTTP {status}" + (f" {code}" if code else " (no error code in the answer)")
        if message:
            said += f": {message}"
        if status >= 500 or status == 429 or code in TRANSIENT_CODES:
            return Unreachable(f"STS at {endpoint} is not available ({said}); will retry")
        return CredentialsRefused(f"STS at {endpoint} refused the token ({said}); "
                                  f"{_hint(token, code, status, audience)}")
    if isinstance(error, SSLError):
        return Unreachable(f"STS at {endpoint}: TLS verification failed ({type(error).__name__}); "
                           "set --ca-bundle / AWS_CA_BUNDLE to the CA that signed its certificate")
    if isinstance(error, BotoCoreError):
        return Unreachable(f"STS at {endpoint} unreachable: {secrets.redact(str(error))}")
    if isinstance(error, (ResponseParserError, KeyError)):
        # botocore's parser quotes the body (it could hold anything): only its kind is said
        return Unreachable(f"STS at {endpoint} answered with something that is not an STS answer "
                           f"({type(error).__name__}; check --sts-endpoint / AWS_ENDPOINT_URL_STS); will retry")
    return error


def exchange(client: Any, aws: AwsSettings, endpoint: str, role_arn: str, token: Token,
             policy: str | None = None) -> Credentials:
    """One AssumeRoleWithWebIdentity call. Blocking: run it in a thread from async code."""
    try:
        answer = client.assume_role_with_web_identity(**params(aws, role_arn, token.value, policy))
    except Exception as e:  # noqa: BLE001 (classified, then re-raised)
        raise classify(e, token, endpoint, aws.audience) from None
    return credentials(answer, endpoint)


def from_answer(answer: Answer, token: Token, endpoint: str, audience: str) -> Credentials:
    """The head start's answer (sent without botocore), read as botocore's client reads its own."""
    model = session().get_service_model("sts")
    operation = model.operation_model(ACTION)
    try:
        parsed = create_parser(model.metadata["protocol"]).parse(
            {"status_code": answer.status, "headers": answer.headers, "body": answer.body}, operation.output_shape)
    except Exception as e:  # noqa: BLE001 (classified as the client's own parse failure would be)
        raise classify(e, token, endpoint, audience) from None
    if answer.status >= 300:
        raise classify(ClientError(parsed, ACTION), token, endpoint, audience)
    return credentials(parsed, endpoint)


def credentials(answer: dict[str, Any], endpoint: str) -> Credentials:
    """Credentials from a parsed answer, their expiry on our clock."""
    c = answer.get("Credentials") or {}
    now = time.time()
    server_now = server_time(answer.get("ResponseMetadata", {}).get("HTTPHeaders", {}))
    try:
        expiration = c["Expiration"].timestamp()
        access_key_id, secret, session_token = c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"]
    except (KeyError, AttributeError):
        raise Unreachable(f"STS at {endpoint} answered without complete Credentials; will retry") from None
    skew = 0.0 if server_now is None else now - server_now
    if abs(skew) > SKEW_TOLERANCE_SECONDS:
        # Expiration is on the server's clock: keep its lifetime, on ours. Otherwise a local clock
        # ahead of the server sees credentials "expired on arrival" and refreshes in a loop.
        expiration += skew
    return Credentials(access_key_id=access_key_id, secret_access_key=secret, session_token=session_token,
                       expiration=expiration, obtained_at=now, clock_skew_seconds=skew)


def server_time(headers: dict[str, str]) -> float | None:
    """The server's clock from its Date header (None when absent or unreadable)."""
    date = headers.get("date")
    if not date:
        return None
    try:
        return email.utils.parsedate_to_datetime(date).timestamp()
    except (TypeError, ValueError):
        return None
