"""Credentials that can touch only this pod's replica (issue 17, part 2), on RGW's real STS: with the
session policy (the default) the served credentials read and write the pod's own prefix and its
lease, and are denied on a neighbour's prefix and on another bucket; with --session-policy off they
carry the role's whole policy, as before."""

from __future__ import annotations

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.bed.pod import Pod, Writer
from tests.bed.replicas import restore_and_compare

pytestmark = pytest.mark.bed


def s3_with(pod: Pod, creds: dict[str, str]):
    return boto3.client("s3", endpoint_url=pod.bed.endpoint, region_name=pod.bed.region,
                        aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                        aws_session_token=creds["Token"], config=Config(s3={"addressing_style": "path"},
                                                                       retries={"max_attempts": 1}))


def denied(call) -> bool:
    try:
        call()
    except ClientError as e:
        return e.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    return False


@pytest.mark.parametrize("scoping", ["on", "off"])
def test_served_credentials_reach_only_the_pods_replica(pod: Pod, scoping: str) -> None:
    sup = pod.start_replicate("--session-policy", scoping)
    sup.wait_ready()
    writer = Writer(pod.db(), 0.05).start()
    s3 = s3_with(pod, sup.served_credentials())
    bucket, mine, neighbour = pod.bed.role.bucket, f"{pod.prefix}/app.db", f"{pod.prefix}-neighbour/app.db"
    s3.put_object(Bucket=bucket, Key=f"{mine}/probe", Body=b"x")
    assert s3.get_object(Bucket=bucket, Key=f"{mine}/probe")["Body"].read() == b"x"
    assert s3.list_objects_v2(Bucket=bucket, Prefix=f"{mine}/")["KeyCount"] >= 1
    s3.get_object(Bucket=bucket, Key=f"{mine}.lease")  # its lease, beside the replica
    s3.delete_object(Bucket=bucket, Key=f"{mine}/probe")
    outside = [lambda: s3.put_object(Bucket=bucket, Key=f"{neighbour}/x", Body=b"x"),
               lambda: s3.list_objects_v2(Bucket=bucket, Prefix=f"{neighbour}/"),
               lambda: s3.put_object(Bucket=pod.bed.other_bucket, Key=f"{mine}/x", Body=b"x")]
    if scoping == "on":
        assert all(denied(call) for call in outside[:2])  # a neighbour's prefix in the same bucket
    else:
        assert not any(denied(call) for call in outside[:2])  # the role's whole bucket, as before
    assert denied(outside[2])  # another bucket: never (the role's own policy)
    committed = writer.stop()
    assert sup.terminate() == 0, sup.output()[-3000:]
    restore_and_compare(pod, committed)  # the whole pod life works with scoped credentials
