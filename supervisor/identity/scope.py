"""The session policy: credentials that can touch only this pod's replicas and their leases.

STS narrows a session to the intersection of the role's policy and an inline `Policy` sent with
AssumeRoleWithWebIdentity (AWS, MinIO and Ceph RGW all honour it). The supervisor needs: list its
replica prefixes, read, write and delete objects under them, and its lease objects beside them.
Nothing else in the bucket, no other bucket.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from supervisor.litestream.config import Database, Replica

# AWS packs and limits the inline policy to about 2048 characters; past that, send none.
MAX_POLICY_CHARS = 2048


def object_arn(bucket: str, key_pattern: str) -> str:
    """An S3 object ARN for a key pattern. Ceph RGW splits ARNs on ':' and refuses a key holding one
    (`system:serviceaccount:ns:sa/...`), so each ':' in the key becomes the one-character wildcard
    '?' (AWS, MinIO and RGW all support it): the same keys, readable by every parser."""
    return f"arn:aws:s3:::{bucket}/{key_pattern.replace(':', '?')}"


def batch_delete(bucket: str) -> list[str]:
    """What Litestream's retention needs beside the object ARNs: the bucket's own ARN. Ceph RGW
    (Pacific) authorizes a DeleteObjects (POST ?delete) as s3:DeleteObject on the bucket, then each
    key as s3:DeleteObject on its object: without it every expired file stays forever, while each
    key is still checked against the prefix. Reads and writes name objects, never the bucket, so the
    entry widens nothing else. MinIO and AWS check only the keys; it shares the objects' statement
    because MinIO refuses a statement whose object actions name no object."""
    return [f"arn:aws:s3:::{bucket}"]


def session_policy(databases: Iterable[Database], read_only: bool = False) -> str | None:
    """Compact JSON (RGW's form parser breaks on whitespace), or None when too large to send.
    `read_only` (verify): list and read the replicas, nothing more (not even their leases)."""
    buckets: dict[str, list[Replica]] = {}
    for db in databases:
        buckets.setdefault(db.replica.bucket, []).append(db.replica)
    statements = []
    for bucket in sorted(buckets):
        replicas = buckets[bucket]
        statements.append({"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [f"arn:aws:s3:::{bucket}"],
                           "Condition": {"StringLike": {"s3:prefix": sorted(f"{r.path}/*" for r in replicas)}}})
        if read_only:
            statements.append({"Effect": "Allow", "Action": ["s3:GetObject"],
                               "Resource": sorted({object_arn(bucket, f"{r.path}/*") for r in replicas})})
            continue
        objects = sorted({object_arn(bucket, key) for r in replicas
                          for key in (f"{r.path}/*", r.lease_key, r.lease_probe_key)})
        statements.append({"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                           "Resource": [*batch_delete(bucket), *objects]})
    if not statements:
        return None
    policy = json.dumps({"Version": "2012-10-17", "Statement": statements}, separators=(",", ":"))
    return policy if len(policy) <= MAX_POLICY_CHARS else None
