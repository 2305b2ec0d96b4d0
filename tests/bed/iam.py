"""IAM setup on RGW: the OIDC provider, a web-identity role scoped to one bucket."""

from __future__ import annotations

import json
from dataclasses import dataclass

import boto3
import botocore.exceptions
from botocore.config import Config

from tests.bed.ceph import ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY
from tests.bed.oidc import DEFAULT_AUDIENCE, Issuer

REGION = "us-east-1"


def compact(doc: object) -> str:
    # RGW does not turn '+' back into ' ' in form bodies: whitespace breaks its JSON parser.
    return json.dumps(doc, separators=(",", ":"))


def admin_client(service: str, endpoint: str):
    return boto3.client(
        service, endpoint_url=endpoint, region_name=REGION,
        aws_access_key_id=ADMIN_ACCESS_KEY, aws_secret_access_key=ADMIN_SECRET_KEY,
        config=Config(retries={"max_attempts": 2}, connect_timeout=5, read_timeout=30,
                      s3={"addressing_style": "path"}),
    )


@dataclass(frozen=True)
class Role:
    arn: str
    name: str
    bucket: str
    subject: str


def setup_role(
    endpoint: str,
    issuer: Issuer,
    *,
    role_name: str = "litestream",
    bucket: str = "litestream",
    subject: str = "system:serviceaccount:default:app",
    audience: str = DEFAULT_AUDIENCE,
    max_session_seconds: int = 3600,
) -> Role:
    """Provider for the issuer, a role whose trust checks audience and `sub`, one-bucket policy."""
    iam = admin_client("iam", endpoint)
    try:
        providers = iam.list_open_id_connect_providers().get("OpenIDConnectProviderList", [])
    except botocore.exceptions.ClientError:  # RGW answers 404 while there is none
        providers = []
    provider_arn = next((p["Arn"] for p in providers if p["Arn"].endswith("/" + issuer.host_and_port)), None)
    if provider_arn is None:
        provider_arn = iam.create_open_id_connect_provider(
            Url=issuer.url, ClientIDList=[audience], ThumbprintList=[issuer.signing.thumbprint],
        )["OpenIDConnectProviderArn"]
    trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow",
        "Principal": {"Federated": [provider_arn]},
        "Action": ["sts:AssumeRoleWithWebIdentity"],
        "Condition": {"StringEquals": {f"{issuer.host_and_port}:app_id": audience,
                                       f"{issuer.host_and_port}:sub": subject}},
    }]}
    arn = iam.create_role(
        RoleName=role_name, Path="/", AssumeRolePolicyDocument=compact(trust),
        MaxSessionDuration=max_session_seconds,
    )["Role"]["Arn"]
    policy = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": ["s3:*"],
        "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
    }]}
    iam.put_role_policy(RoleName=role_name, PolicyName="one-bucket", PolicyDocument=compact(policy))
    return Role(arn=arn, name=role_name, bucket=bucket, subject=subject)
