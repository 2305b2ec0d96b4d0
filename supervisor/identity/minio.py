"""What MinIO derives from its OpenID settings, so a person does not have to read its source.

MinIO names the role of an OpenID provider configured with a role policy
`arn:minio:iam:<region>::role/<id>`, where `<id>` is base64url(sha1(client_id)) without padding
(the client id is the token audience it accepts, e.g. `sts.amazonaws.com`). It logs the ARN at
start-up on a line beginning `IAM Roles:`.
"""

from __future__ import annotations

import base64
import hashlib


def role_id(client_id: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha1(client_id.encode()).digest()).rstrip(b"=").decode()  # noqa: S324


def role_arn(client_id: str, region: str = "") -> str:
    """The ARN MinIO gives the role of the OpenID provider whose client id is `client_id`."""
    return f"arn:minio:iam:{region}::role/{role_id(client_id)}"


def looks_like_minio_role(arn: str) -> bool:
    return arn.startswith("arn:minio:iam:")
