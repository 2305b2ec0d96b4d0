"""Credentials that can touch only this pod's replica (issue 17, part 2), on RGW's real STS: with the
session policy the served credentials read and write the pod's own prefix and its lease, and are
denied on a neighbour's prefix and on another bucket; with --session-policy off they carry the
role's whole policy, as before. Whatever the mode, Litestream's retention must be able to delete
(or the sidecar says it cannot): RGW 16 refuses batch deletes under any session policy."""

from __future__ import annotations

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.bed.iam import admin_client
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


def deletes_in_batch(s3, bucket: str, keys: list[str], endpoint: str) -> set[str]:
    """Put `keys` (as the admin), then remove them with one DeleteObjects (POST ?delete) as `s3`, the
    way Litestream's retention removes expired files: the keys the store says it deleted. A refusal
    of the whole request is an error."""
    admin = admin_client("s3", endpoint)
    for key in keys:
        admin.put_object(Bucket=bucket, Key=key, Body=b"x")
    answer = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": False})
    return {d["Key"] for d in answer.get("Deleted", [])}


def logged(sup, event: str) -> bool:
    return any(e.get("event") == event for e in sup.events())


@pytest.mark.parametrize("scoping", ["auto", "on", "off"])
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
    # the session policy is in force unless off, or dropped by auto because the store refused
    # Litestream's batch deletes under it (RGW 16 refuses every key of a batch under any policy)
    dropped = logged(sup, "session_policy_dropped")
    assert not dropped or scoping == "auto"
    scoped = scoping == "on" or (scoping == "auto" and not dropped)
    assert sup.metric("litestream_supervisor_session_policy") == (1 if scoped else 0)
    # Litestream's retention deletes in batches: the pod's own files go (or, policy kept with `on`,
    # the sidecar said they cannot), a neighbour's only with the role's whole policy
    batch = [f"{mine}/old-1", f"{mine}/old-2", f"{neighbour}/old-1"]
    deleted = deletes_in_batch(s3, bucket, batch, pod.bed.endpoint)
    if scoping == "auto":  # whatever auto settled on, the retention's deletes go through
        assert set(batch[:2]) <= deleted and not logged(sup, "batch_delete_refused")
    if scoped:
        assert batch[2] not in deleted
        assert (deleted == set(batch[:2])) != logged(sup, "batch_delete_refused")
    else:
        assert deleted == set(batch) and not logged(sup, "batch_delete_refused")
    outside = [lambda: s3.put_object(Bucket=bucket, Key=f"{neighbour}/x", Body=b"x"),
               lambda: s3.list_objects_v2(Bucket=bucket, Prefix=f"{neighbour}/")]
    assert [denied(call) for call in outside] == [scoped, scoped]  # a neighbour's prefix in the same bucket
    assert denied(lambda: s3.put_object(Bucket=pod.bed.other_bucket, Key=f"{mine}/x", Body=b"x"))  # the role's
    committed = writer.stop()
    assert sup.terminate() == 0, sup.output()[-3000:]
    restore_and_compare(pod, committed)  # the whole pod life works with scoped credentials

def level0(pod: Pod) -> set[str]:
    s3 = admin_client("s3", pod.bed.endpoint)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=pod.bed.role.bucket,
                                                         Prefix=f"{pod.prefix}/app.db/0000/")
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


def test_litestream_removes_expired_files_with_the_default_credentials(pod: Pod) -> None:
    """Litestream's retention deletes expired level-0 files in batches (DeleteObjects). With the
    credentials a pod gets by default, those deletes must go through on the store in front of us
    (Ceph RGW 16 refuses every key of a batch under an inline session policy): otherwise the
    replica grows without end, one file per second of writes."""
    pod.write_config(top="l0-retention: 2s\nl0-retention-check-interval: 1s\nlevels:\n  - interval: 3s")
    sup = pod.start_replicate()
    sup.wait_ready()
    writer = Writer(pod.db(), 0.05).start()
    sup.wait_for(lambda: len(level0(pod)) >= 3, 60, "level-0 files")
    first = level0(pod)
    sup.wait_for(lambda: not first & level0(pod), 60, "the first level-0 files removed by retention")
    committed = writer.stop()
    assert sup.terminate() == 0, sup.output()[-3000:]
    # refused as a whole (no s3:DeleteObject on the bucket) or key by key (any session policy on RGW 16)
    assert "retention enforcement failed" not in sup.output() and "delete batch" not in sup.output()
    restore_and_compare(pod, committed)
