"""The bed is real: RGW's STS checks tokens and expiry, the projector writes the kubelet's
layout, and Litestream round-trips a database through RGW. These fail if a part is faked."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
from pathlib import Path

import boto3
import botocore.exceptions
import pytest
from botocore import UNSIGNED
from botocore.config import Config

from tests.bed.projector import TokenProjector
from tests.bed.testbed import Bed, litestream_binary

pytestmark = pytest.mark.bed


def sts(bed: Bed):
    return boto3.client("sts", endpoint_url=bed.endpoint, region_name=bed.region,
                        config=Config(signature_version=UNSIGNED, parameter_validation=False,
                                      retries={"total_max_attempts": 1}))


def assume(bed: Bed, token: str, duration: int | None = None) -> dict:
    kw = {"DurationSeconds": duration} if duration else {}
    return sts(bed).assume_role_with_web_identity(RoleArn=bed.role.arn, RoleSessionName="bed-test",
                                                  WebIdentityToken=token, **kw)["Credentials"]


def s3_with(bed: Bed, creds: dict):
    return boto3.client("s3", endpoint_url=bed.endpoint, region_name=bed.region,
                        aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                        aws_session_token=creds["SessionToken"],
                        config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}))


def test_valid_token_gets_credentials_scoped_to_one_bucket(bed: Bed) -> None:
    creds = assume(bed, bed.issuer.mint())
    s3 = s3_with(bed, creds)
    s3.put_object(Bucket=bed.role.bucket, Key="bed/hello", Body=b"hello")
    assert s3.get_object(Bucket=bed.role.bucket, Key="bed/hello")["Body"].read() == b"hello"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_object(Bucket=bed.other_bucket, Key="x", Body=b"x")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


@pytest.mark.parametrize("kind", ["wrong_audience", "expired", "unknown_key", "not_yet_valid", "wrong_subject"])
def test_bad_tokens_are_refused(bed: Bed, kind: str) -> None:
    token = {
        "wrong_audience": lambda: bed.issuer.mint(audience="not-sts"),
        "expired": lambda: bed.issuer.mint(ttl_seconds=60, issued_offset_seconds=-3600),
        "unknown_key": lambda: bed.issuer.mint(unknown_key=True),
        "not_yet_valid": lambda: bed.issuer.mint(issued_offset_seconds=3600),
        "wrong_subject": lambda: bed.issuer.mint(service_account="intruder"),
    }[kind]()
    with pytest.raises(botocore.exceptions.ClientError) as e:
        assume(bed, token)
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] in (400, 403)


def test_temporary_credentials_are_refused_after_expiry(bed: Bed) -> None:
    creds = assume(bed, bed.issuer.mint(), duration=bed.cluster.sts_min_seconds)
    s3 = s3_with(bed, creds)
    s3.put_object(Bucket=bed.role.bucket, Key="bed/expiry", Body=b"x")
    left = creds["Expiration"].timestamp() - time.time()
    assert 0 < left <= bed.cluster.sts_min_seconds + 2
    time.sleep(left + 2)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket=bed.role.bucket, Key="bed/expiry")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_projector_writes_the_kubelet_layout(tmp_path: Path, bed: Bed) -> None:
    tp = TokenProjector(tmp_path / "tok", bed.issuer.mint)
    first = tp.rotate()
    held = tp.path  # a reader that holds the path, as AWS_WEB_IDENTITY_TOKEN_FILE does
    assert held.read_text() == first
    entries = sorted(p.name for p in (tmp_path / "tok").iterdir())
    assert entries[0].startswith("..20") and entries[1:] == ["..data", "token"]
    assert os.readlink(tmp_path / "tok" / "token") == "..data/token"
    old_target = os.readlink(tmp_path / "tok" / "..data")
    time.sleep(0.01)
    second = tp.rotate()
    assert second != first and held.read_text() == second
    new_target = os.readlink(tmp_path / "tok" / "..data")
    assert new_target != old_target and not (tmp_path / "tok" / old_target).exists()
    assert oct((tmp_path / "tok" / new_target / "token").stat().st_mode & 0o777) == "0o600"


def test_litestream_round_trip_through_rgw(tmp_path: Path, bed: Bed) -> None:
    db = tmp_path / "rt.db"
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE t(x)")
    con.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(500)])
    con.commit()
    cfg = tmp_path / "ls.yml"
    cfg.write_text(f"dbs:\n  - path: {db}\n    replica:\n      type: s3\n      bucket: {bed.role.bucket}\n"
                   f"      path: bed/roundtrip\n      endpoint: {bed.endpoint}\n      region: {bed.region}\n")
    tp = TokenProjector(tmp_path / "tok", bed.issuer.mint)
    tp.rotate()
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}  # 0.5.17 refuses it
    env.update(bed.pod_env(tp.path))
    binary = litestream_binary()
    subprocess.run([binary, "replicate", "-config", str(cfg), "-once"], env=env, check=True,
                   capture_output=True, timeout=60)
    out = tmp_path / "restored.db"
    subprocess.run([binary, "restore", "-config", str(cfg), "-o", str(out), str(db)], env=env, check=True,
                   capture_output=True, timeout=60)
    assert sqlite3.connect(out).execute("SELECT count(*) FROM t").fetchone() == (500,)
