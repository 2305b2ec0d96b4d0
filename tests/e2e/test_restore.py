"""`restore` on the real bed: fail closed, every row back, distinct exit codes, nothing half-written."""

from __future__ import annotations

import hashlib
import json

import pytest

from supervisor.core.errors import ExitCode
from tests.bed.net import free_port
from tests.bed.pod import Pod
from tests.bed.replicas import (
    forget_local,
    make_db,
    push_with_litestream,
    push_with_litestream_03,
    restoring,
    role_s3,
    row_count,
)

pytestmark = pytest.mark.bed


def leftovers(pod: Pod) -> list[str]:
    return sorted(p.name for p in pod.data.iterdir() if "restoring" in p.name or p.name.endswith(".tmp"))


def assert_no_secrets(pod: Pod) -> None:
    text = "\n".join(pod.outputs)
    for secret in pod.secret_values():
        assert secret and secret not in text


def test_fresh_start_on_empty_prefix(pod: Pod) -> None:
    run = pod.run("restore", "--timeout", "30")
    assert run.returncode == 0, run.output
    assert not pod.db().exists() and leftovers(pod) == []
    assert '"fresh_start"' in run.output
    # Litestream runs beside the replica's inspection; on an empty prefix its complaint is dropped
    assert '"level": "error"' not in run.output and "no matching backup" not in run.output
    required = pod.run("restore", "--require-replica")
    assert required.returncode == ExitCode.REPLICA_REQUIRED and "--require-replica" in required.output
    assert not pod.db().exists()
    assert_no_secrets(pod)


def test_populated_replica_restores_every_row(pod: Pod) -> None:
    make_db(pod.db(), 2000)
    push_with_litestream(pod, pod.db())
    assert not pod.db().exists()
    run = pod.run("restore", "--log-level", "debug")
    assert run.returncode == 0, run.output
    assert row_count(pod.db()) == 2000 and leftovers(pod) == []
    assert "Litestream 0.5 (LTX files)" in run.output
    # the log says where the time went: Litestream's download and our integrity check, within the whole
    events = {e["event"]: e for e in map(json.loads, filter(None, run.output.splitlines()))}
    restored = events["restored"]
    assert restored["litestream_seconds"] > 0 and restored["check_seconds"] >= 0
    assert 0 < events["credentials_obtained"]["sts_seconds"] < restored["seconds"] + 1
    assert restored["litestream_seconds"] + restored["check_seconds"] <= restored["seconds"] + 0.01
    assert_no_secrets(pod)


def test_existing_db_of_unknown_position_is_left_untouched_and_refused(pod: Pod) -> None:
    """A database on disk with no Litestream state beside it, while the replica holds data: its
    position is unknown, so it is not trusted (issue 25; before, it was kept and would have become
    the replica's new head). It is never modified; `keep` starts on it on purpose."""
    make_db(pod.db(), 10)
    push_with_litestream(pod, pod.db())
    make_db(pod.db(), 3)
    before = hashlib.sha256(pod.db().read_bytes()).hexdigest()
    run = pod.run("restore")
    assert run.returncode == ExitCode.LOCAL_BEHIND and "unknown position" in run.output, run.output[-2000:]
    assert hashlib.sha256(pod.db().read_bytes()).hexdigest() == before and row_count(pod.db()) == 3
    run = pod.run("restore", "--if-local-behind", "keep")
    assert run.returncode == 0 and '"db_kept_behind_replica"' in run.output, run.output[-2000:]
    assert hashlib.sha256(pod.db().read_bytes()).hexdigest() == before and row_count(pod.db()) == 3


def test_s3_down_fails_within_timeout_and_leaves_nothing(pod: Pod) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    pod.write_config(endpoint=dead)
    # STS up, S3 down
    run = pod.run("restore", "--timeout", "4")
    assert run.returncode == ExitCode.UNREACHABLE, run.output
    assert run.seconds < 15 and not pod.db().exists() and leftovers(pod) == []
    assert "unreachable" in run.output.lower() or "gave up" in run.output
    # both down
    run = pod.run("restore", "--timeout", "3", env=pod.env(AWS_ENDPOINT_URL_STS=dead))
    assert run.returncode == ExitCode.UNREACHABLE and run.seconds < 15, run.output
    assert not pod.db().exists()


def test_wrong_audience_and_expired_tokens_are_refused(pod: Pod) -> None:
    pod.projector.rotate(pod.bed.issuer.mint(audience="wrong-audience"))
    run = pod.run("restore", "--timeout", "20")
    assert run.returncode == ExitCode.CREDENTIALS_REFUSED, run.output
    assert "wrong-audience" in run.output and "sts.amazonaws.com" in run.output
    pod.projector.rotate(pod.bed.issuer.mint(ttl_seconds=60, issued_offset_seconds=-3600))
    run = pod.run("restore", "--timeout", "20")
    assert run.returncode == ExitCode.CREDENTIALS_REFUSED and "expired" in run.output, run.output
    assert not pod.db().exists()
    pod.projector.rotate(pod.bed.issuer.mint(unknown_key=True))
    run = pod.run("restore", "--timeout", "20")
    assert run.returncode == ExitCode.CREDENTIALS_REFUSED and "refused the token" in run.output
    assert_no_secrets(pod)


def test_unrelated_objects_are_refused(pod: Pod) -> None:
    pod.bed.admin_s3().put_object(Bucket=pod.bed.role.bucket, Key=f"{pod.prefix}/app.db/backup.tar.gz", Body=b"x")
    run = pod.run("restore")
    assert run.returncode == ExitCode.INCOMPATIBLE, run.output
    assert "not a Litestream replica" in run.output and "backup.tar.gz" in run.output
    assert not pod.db().exists()


def test_litestream_03_replica_is_restored(pod: Pod) -> None:
    make_db(pod.db(), 500)
    push_with_litestream_03(pod, pod.db())
    run = pod.run("restore")
    assert run.returncode == 0, run.output
    assert "Litestream 0.3 (generations/)" in run.output and row_count(pod.db()) == 500


def test_corrupt_replica_fails_integrity_and_leaves_nothing(pod: Pod) -> None:
    make_db(pod.db(), 300)
    push_with_litestream(pod, pod.db())
    s3 = role_s3(pod)
    for obj in s3.list_objects_v2(Bucket=pod.bed.role.bucket, Prefix=pod.prefix)["Contents"]:
        body = bytearray(s3.get_object(Bucket=pod.bed.role.bucket, Key=obj["Key"])["Body"].read())
        for i in range(200, len(body), 97):
            body[i] ^= 0xFF
        s3.put_object(Bucket=pod.bed.role.bucket, Key=obj["Key"], Body=bytes(body))
    run = pod.run("restore")
    assert run.returncode == ExitCode.RESTORE_FAILED, run.output
    assert not pod.db().exists() and leftovers(pod) == []


def test_credentials_expiring_mid_restore_do_not_break_it(pod: Pod) -> None:
    make_db(pod.db(), 3000, payload_bytes=4096)  # ~25 MB
    push_with_litestream(pod, pod.db())
    with pod.through_forwarder(throttle_bytes_per_second=1_000_000):  # S3 only: STS stays direct
        run = pod.run("restore", "--duration-seconds", "10", "--timeout", "240",
                      env=pod.env(AWS_ENDPOINT_URL_STS=pod.bed.endpoint))
    assert run.returncode == 0, run.output[-3000:]
    assert run.seconds > 12, f"restore took {run.seconds:.1f}s: not longer than the 10 s credentials"
    assert '"restore_progress"' in run.output  # long work reports progress
    assert run.output.count('"reason": "schedule"') >= 1
    assert row_count(pod.db()) == 3000


def test_sigterm_during_restore_leaves_nothing(pod: Pod) -> None:
    make_db(pod.db(), 2000, payload_bytes=4096)
    push_with_litestream(pod, pod.db())
    with pod.through_forwarder(throttle_bytes_per_second=300_000):
        sup = pod.start("restore", env=pod.env(AWS_ENDPOINT_URL_STS=pod.bed.endpoint))
        sup.wait_for(lambda: restoring(pod), 30, "restore writing")
        rc = sup.terminate(timeout=30)
    assert rc == ExitCode.INTERRUPTED, sup.output()[-2000:]
    assert not pod.db().exists() and leftovers(pod) == []
    assert "interrupted" in sup.output()


def test_check_passes_and_names_the_failing_step(pod: Pod) -> None:
    make_db(pod.db(), 5)
    push_with_litestream(pod, pod.db())
    good = pod.run("check")
    assert good.returncode == 0, good.output
    for step in ("config", "litestream", "token", "role", "sts", "clock", "replica", "lease", "deletes"):
        assert f"[ok]   {step}" in good.output
    assert "arn:minio:iam:::role/oxnUw3DAuQF1uggjXGxI2AmW8IA" in good.output  # what MinIO would use
    assert "Litestream 0.5 (LTX files)" in good.output
    pod.projector.rotate(pod.bed.issuer.mint(audience="wrong-audience"))
    bad = pod.run("check")
    assert bad.returncode == ExitCode.CHECK_FAILED
    assert "[FAIL] token" in bad.output and "[FAIL] sts" in bad.output
    # every step is named, run or not (a hostile review: deletes vanished when STS failed)
    assert "[skip] replica" in bad.output and "[skip] deletes" in bad.output
    pod.projector.rotate()
    pod.write_config(endpoint=f"http://127.0.0.1:{free_port()}")
    down = pod.run("check", "--timeout", "3")
    assert down.returncode == ExitCode.CHECK_FAILED and "[FAIL] replica" in down.output, down.output
    pod.write_config()
    pod.bed.admin_s3().put_object(Bucket=pod.bed.role.bucket, Key=f"{pod.prefix}/app.db/junk", Body=b"x")
    s3 = role_s3(pod)
    for obj in s3.list_objects_v2(Bucket=pod.bed.role.bucket, Prefix=f"{pod.prefix}/app.db/0")["Contents"]:
        s3.delete_object(Bucket=pod.bed.role.bucket, Key=obj["Key"])
    junk = pod.run("check")
    assert junk.returncode == ExitCode.CHECK_FAILED
    assert "[FAIL] replica" in junk.output and "wrong prefix" in junk.output
    assert_no_secrets(pod)


def test_credentials_command_prints_credential_process_json(pod: Pod) -> None:
    import json
    run = pod.run("credentials")
    assert run.returncode == 0, run.output
    line = next(line for line in run.output.splitlines() if '"Version"' in line)
    answer = json.loads(line)
    assert answer["Version"] == 1 and answer["AccessKeyId"] and answer["SessionToken"]
    # the secret appears only in that one JSON line (stdout), never in a log line
    assert sum(answer["SecretAccessKey"] in line for line in run.output.splitlines()) == 1


def test_aws_ca_bundle_in_the_environment_is_handled(pod: Pod) -> None:
    """Litestream 0.5.17 refuses to start with AWS_CA_BUNDLE set; the supervisor passes it as SSL_CERT_FILE."""
    make_db(pod.db(), 50)
    push_with_litestream(pod, pod.db())
    run = pod.run("restore", env=pod.env(AWS_CA_BUNDLE=str(pod.bed.issuer.ca_file)))
    assert run.returncode == 0, run.output
    assert row_count(pod.db()) == 50
    forget_local(pod.db())
    run = pod.run("restore", env=pod.env(AWS_CA_BUNDLE=None, SSL_CERT_FILE=None, SSL_CERT_DIR=None,
                                         REQUESTS_CA_BUNDLE=None))
    assert run.returncode == 0 and row_count(pod.db()) == 50, run.output
