"""AssumeRoleWithWebIdentity as the HTTP request it is, sendable without botocore.

The request is unsigned: a form POST of a few fields. Sent with the standard library it needs
neither botocore's import (~55 ms) nor a client, so the head start's request leaves ~60 ms after
exec rather than ~130 ms, and STS answers before the rest of the program has loaded. The answer
is still read by botocore's own parser (`sts.from_answer`), exactly as its client would.

Only what botocore would do the same way is done here: the same fields (`params`, which the
botocore path sends too), the same URL, the same CA file. Where the two could differ (a proxy in
the environment) nothing is sent ahead, and a transport failure is not reported from here: the
keeper then sends its own request through botocore, which reports it in its own words.
"""

from __future__ import annotations

import http.client
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlencode, urlsplit

if TYPE_CHECKING:
    from supervisor.core.settings import AwsSettings, Settings
    from supervisor.litestream.config import LitestreamConfig

ACTION = "AssumeRoleWithWebIdentity"
VERSION = "2011-06-15"
CONTENT_TYPE = "application/x-www-form-urlencoded; charset=utf-8"  # botocore's, for the query protocol


def sts_endpoint(settings: Settings, config: LitestreamConfig | None) -> str:
    """--sts-endpoint / AWS_ENDPOINT_URL_STS / AWS_ENDPOINT_URL, else the replica's endpoint."""
    if settings.aws.sts_endpoint:
        return settings.aws.sts_endpoint
    if config is not None:
        for db in config.databases:
            if db.replica.endpoint:
                return db.replica.endpoint
    if settings.aws.s3_endpoint:
        return settings.aws.s3_endpoint
    return f"https://sts.{settings.aws.region}.amazonaws.com"


def params(aws: AwsSettings, role_arn: str, token: str, policy: str | None) -> dict[str, str | int]:
    """The operation's fields, whichever way it is sent."""
    fields: dict[str, str | int] = {"RoleArn": role_arn, "RoleSessionName": aws.session_name,
                                    "WebIdentityToken": token}
    if aws.duration_seconds:
        fields["DurationSeconds"] = aws.duration_seconds
    if policy:
        fields["Policy"] = policy  # narrows the session to the replicas (supervisor/identity/scope.py)
    return fields


def form(fields: Mapping[str, str | int]) -> bytes:
    return urlencode({"Action": ACTION, "Version": VERSION, **fields}).encode()


def ca_file(aws: AwsSettings) -> str:
    """The CA file botocore verifies STS with: --ca-bundle, else certifi's, else its own."""
    if aws.ca_bundle is not None:
        return str(aws.ca_bundle)
    try:
        import certifi
    except ImportError:
        spec = importlib.util.find_spec("botocore")  # the package's location, without importing it
        assert spec is not None and spec.origin is not None
        return str(Path(spec.origin).parent / "cacert.pem")
    return str(certifi.where())


def proxied(environ: Mapping[str, str]) -> bool:
    """A proxy botocore would go through (or bypass, per NO_PROXY): leave the request to it."""
    return any(k.lower() in ("http_proxy", "https_proxy", "all_proxy") and v for k, v in environ.items())


@dataclass(frozen=True)
class Answer:
    """STS's answer as botocore's parser takes it."""

    status: int
    headers: dict[str, str]
    body: bytes = field(repr=False)  # holds the credentials


def send(endpoint: str, body: bytes, aws: AwsSettings) -> Answer:
    """POST the form; OSError or http.client.HTTPException when no answer came."""
    url = urlsplit(endpoint)
    timeout = aws.sts_timeout_seconds
    conn: http.client.HTTPConnection
    if url.scheme == "https":
        import ssl

        context = ssl.create_default_context(cafile=ca_file(aws))
        conn = http.client.HTTPSConnection(url.hostname or "", url.port, timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=timeout)
    try:
        conn.request("POST", url.path or "/", body, {"Content-Type": CONTENT_TYPE})
        response = conn.getresponse()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        conn.close()
