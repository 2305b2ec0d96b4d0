"""`rgw-setup` on the bed's real RGW (issue 17, part 1): it creates the role for one service
account, a second run changes nothing, a token with another `sub` is refused by the trust policy
it wrote, and the whole pod life (restore, replicate with refresh and rotation, SIGTERM, restore)
runs with the role it created."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.core.errors import ExitCode
from tests.bed.ceph import ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY, Cluster
from tests.bed.iam import admin_client
from tests.bed.pod import Pod, Writer, supervisor_cmd
from tests.bed.replicas import restore_and_compare

pytestmark = pytest.mark.bed


@pytest.fixture
def empty_rgw(pod: Pod, tmp_path: Path) -> Iterator[str]:
    """A second, empty RGW (no provider, no role) with STS, trusting the bed's issuer CA."""
    cluster = Cluster(tmp_path / "ceph2", pod.bed.issuer.ca_file)
    cluster.start()
    try:
        admin_client("s3", cluster.endpoint).create_bucket(Bucket=pod.bed.role.bucket)
        yield cluster.endpoint
    finally:
        cluster.stop()


def rgw_setup(pod: Pod, role: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in pod.env().items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID=ADMIN_ACCESS_KEY, AWS_SECRET_ACCESS_KEY=ADMIN_SECRET_KEY)
    return subprocess.run(supervisor_cmd("rgw-setup", "--endpoint", pod.endpoint, "--issuer", pod.bed.issuer.url,
                                         "--issuer-ca", str(pod.bed.issuer.ca_file), "--namespace", "default",
                                         "--service-account", "app", "--bucket", pod.bed.role.bucket,
                                         "--role-name", role),
                          env=env, capture_output=True, text=True, timeout=120, check=False)


def test_rgw_setup_then_the_whole_pod_life(pod: Pod, empty_rgw: str) -> None:
    pod.endpoint = empty_rgw  # S3, STS and IAM of the empty RGW
    role = f"setup-{uuid.uuid4().hex[:8]}"
    first = rgw_setup(pod, role)
    assert first.returncode == 0, first.stderr
    arn = first.stdout.strip()
    assert arn.endswith(f"role/{role}") and f"created role {role}" in first.stderr
    assert "created OIDC provider" in first.stderr
    second = rgw_setup(pod, role)
    assert second.returncode == 0 and second.stdout.strip() == arn
    assert "nothing to change" in second.stderr, second.stderr
    # the per-service-account prefix the role allows
    pod.prefix = f"system:serviceaccount:default:app/{uuid.uuid4().hex[:8]}"
    pod.write_config()
    env = pod.env(AWS_ROLE_ARN=arn)
    # another service account's token: refused by the trust policy rgw-setup wrote
    pod.projector.rotate(pod.bed.issuer.mint(service_account="other"))
    refused = pod.run("restore", "--timeout", "20", env=env)
    assert refused.returncode == ExitCode.CREDENTIALS_REFUSED, refused.output[-2000:]
    pod.projector.rotate()
    run = pod.run("restore", env=env)
    assert run.returncode == 0, run.output[-1500:]
    sup = pod.start_replicate("--duration-seconds", "10", env=env)
    sup.wait_ready()
    writer = Writer(pod.db(), 0.05).start()
    pod.projector.start(interval_seconds=6)
    sup.wait_for(lambda: sup.metric("litestream_supervisor_credential_refreshes_total") >= 2
                 and sup.metric("litestream_supervisor_token_rotations_total") >= 1, 90, "refresh and rotation")
    pod.projector.stop()
    time.sleep(1)
    committed = writer.stop()
    assert sup.terminate() == 0, sup.output()[-3000:]
    # the role lets Litestream's retention delete in batches (RGW checks the bucket, then each key)
    assert '"batch_delete_refused"' not in sup.output() and "session_policy_dropped" in sup.output()
    pod.env = lambda **kw: Pod.env(pod, **{"AWS_ROLE_ARN": arn, **kw})  # type: ignore[method-assign]
    restore_and_compare(pod, committed)
