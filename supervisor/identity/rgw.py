"""`rgw-setup`: the Ceph RGW side of web identity, created or updated idempotently.

RGW configures web identity through its IAM API (not environment variables like MinIO): an OIDC
provider for the cluster's issuer (with certificate thumbprints), a role per service account whose
trust policy checks the token's audience and `sub`, and that role's permission policy, limited to
the bucket and the service account's own prefix `system:serviceaccount:<ns>:<sa>/`. Re-running
changes nothing; the role ARN to use is printed.

Thumbprints: RGW 16.2 checks the thumbprint of the JWKS signing certificate (`x5c`); later
releases and AWS check the issuer's TLS certificate chain. Both are registered (the x5c
certificates, the issuer's certificate and its CA from --issuer-ca; at most five), alongside any
already there.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import ssl
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import ClientError

from supervisor.core.errors import ExitCode, SupervisorError
from supervisor.identity.scope import batch_delete, object_arn


def compact(doc: object) -> str:
    """RGW's form parser breaks on whitespace in policy documents, and wants "Version" first."""
    return json.dumps(doc, separators=(",", ":"))


def _sha1(der: bytes) -> str:
    return hashlib.sha1(der).hexdigest()  # noqa: S324 (IAM thumbprints are SHA-1 by definition)


def _get_json(url: str, context: ssl.SSLContext, timeout: float) -> dict[str, Any]:
    with urllib.request.urlopen(url, context=context, timeout=timeout) as r:  # noqa: S310 (https only)
        return json.loads(r.read())


def issuer_thumbprints(issuer: str, ca_file: str | None, timeout: float = 10.0) -> list[str]:
    """SHA-1 thumbprints of the JWKS x5c certificates and of the issuer's TLS certificate chain."""
    if not issuer.startswith("https://"):
        raise SupervisorError(f"--issuer: expected an https:// URL, got {issuer!r}", exit_code=ExitCode.USAGE)
    context = ssl.create_default_context(cafile=ca_file)
    try:
        discovery = _get_json(issuer.rstrip("/") + "/.well-known/openid-configuration", context, timeout)
        jwks = _get_json(str(discovery["jwks_uri"]), context, timeout)
    except (OSError, ValueError, KeyError) as e:
        raise SupervisorError(f"--issuer {issuer}: cannot read its discovery document and keys: {e}",
                              exit_code=ExitCode.UNREACHABLE) from None
    prints = []
    for key in jwks.get("keys", []):
        for cert in key.get("x5c", [])[:1]:
            prints.append(_sha1(base64.b64decode(cert)))
    parts = urlsplit(issuer)
    with socket.create_connection((parts.hostname, parts.port or 443), timeout=timeout) as raw, \
            context.wrap_socket(raw, server_hostname=parts.hostname) as tls:
        leaf = tls.getpeercert(binary_form=True)
    if leaf:
        prints.append(_sha1(leaf))
    if ca_file:  # the CA that verified the issuer: the top of its chain
        pem = open(ca_file).read()  # noqa: SIM115
        for block in pem.split("-----END CERTIFICATE-----")[:-1]:
            prints.append(_sha1(ssl.PEM_cert_to_DER_cert(block + "-----END CERTIFICATE-----\n")))
    return list(dict.fromkeys(prints))


@dataclass(frozen=True)
class Plan:
    issuer: str
    audience: str
    bucket: str
    namespace: str
    service_account: str
    role_name: str
    max_session_seconds: int = 3600

    @property
    def subject(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"

    @property
    def issuer_id(self) -> str:
        """How RGW names the provider and its condition keys: the issuer URL without its scheme."""
        return self.issuer.split("://", 1)[1].rstrip("/")

    def trust(self, provider_arn: str) -> dict[str, Any]:
        return {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Federated": [provider_arn]},
            "Action": ["sts:AssumeRoleWithWebIdentity"],
            "Condition": {"StringEquals": {f"{self.issuer_id}:app_id": self.audience,
                                           f"{self.issuer_id}:sub": self.subject}}}]}

    def permissions(self) -> dict[str, Any]:
        prefix = f"{self.subject}/"
        # ListBucket on the bucket, unconditioned: RGW (like AWS) answers a GET of a missing key with
        # 403 unless the caller may list it, and evaluates that without an s3:prefix, so a prefix
        # condition would turn "no lease yet" into "access denied". Key names are all it exposes;
        # objects stay limited to the prefix, and the pod's session policy narrows listing too.
        return {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [f"arn:aws:s3:::{self.bucket}"]},
            {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
             "Resource": [*batch_delete(self.bucket), object_arn(self.bucket, f"{prefix}*")]}]}


def _code(error: ClientError) -> str:
    return str((error.response.get("Error") or {}).get("Code") or
               error.response.get("ResponseMetadata", {}).get("HTTPStatusCode"))


def _same_policy(a: Any, b: Any) -> bool:
    def norm(doc: Any) -> Any:
        return json.loads(doc) if isinstance(doc, str) else doc
    return json.dumps(norm(a), sort_keys=True) == json.dumps(norm(b), sort_keys=True)


def apply(iam: Any, plan: Plan, thumbprints: list[str]) -> tuple[str, list[str]]:
    """Create or update provider, role, trust and policy. Returns (role ARN, what changed)."""
    changes: list[str] = []
    try:
        providers = iam.list_open_id_connect_providers().get("OpenIDConnectProviderList", [])
    except ClientError:  # RGW answers 404 while there is none
        providers = []
    provider_arn = next((p["Arn"] for p in providers if p["Arn"].endswith("/" + plan.issuer_id)), None)
    if provider_arn is None:
        provider_arn = iam.create_open_id_connect_provider(
            Url=plan.issuer, ClientIDList=[plan.audience], ThumbprintList=thumbprints[:5])["OpenIDConnectProviderArn"]
        changes.append(f"created OIDC provider {provider_arn}")
    else:
        current = iam.get_open_id_connect_provider(OpenIDConnectProviderArn=provider_arn)
        clients = set(current.get("ClientIDList", []))
        prints = list(current.get("ThumbprintList", []))
        if plan.audience not in clients or not set(thumbprints) <= set(prints):
            # RGW has no update calls for providers: replace it (its ARN, from the URL, stays the same)
            iam.delete_open_id_connect_provider(OpenIDConnectProviderArn=provider_arn)
            provider_arn = iam.create_open_id_connect_provider(
                Url=plan.issuer, ClientIDList=sorted(clients | {plan.audience}),
                ThumbprintList=list(dict.fromkeys(prints + thumbprints))[:5])["OpenIDConnectProviderArn"]
            changes.append(f"updated OIDC provider {provider_arn} (audience and thumbprints)")
    trust = plan.trust(provider_arn)
    try:
        role = iam.get_role(RoleName=plan.role_name)["Role"]
        if not _same_policy(role.get("AssumeRolePolicyDocument"), trust):
            iam.update_assume_role_policy(RoleName=plan.role_name, PolicyDocument=compact(trust))
            changes.append(f"updated the trust policy of role {plan.role_name}")
    except ClientError as e:
        if _code(e) not in ("NoSuchEntity", "404"):
            raise
        role = iam.create_role(RoleName=plan.role_name, Path="/", AssumeRolePolicyDocument=compact(trust),
                               MaxSessionDuration=plan.max_session_seconds)["Role"]
        changes.append(f"created role {plan.role_name}")
    permissions = plan.permissions()
    try:
        current_policy = iam.get_role_policy(RoleName=plan.role_name, PolicyName="litestream-replica")
        same = _same_policy(current_policy.get("PolicyDocument"), permissions)
    except ClientError as e:
        if _code(e) not in ("NoSuchEntity", "404"):
            raise
        same = False
    if not same:
        iam.put_role_policy(RoleName=plan.role_name, PolicyName="litestream-replica",
                            PolicyDocument=compact(permissions))
        changes.append(f"set the permission policy of role {plan.role_name} ({plan.bucket}/{plan.subject}/*)")
    return str(role["Arn"]), changes
