"""A pod patched by the injection runs on the bed exactly as the patch says (issue 14): the restore
and replicate containers get the patch's args, env and mounts (the projected token volume is the
kubelet projector's directory, an emptyDir a temp dir); an app writes; SIGTERM; a second patched
pod restores every row."""

from __future__ import annotations

import copy
import json
import posixpath
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import jsonpatch
import pytest

from supervisor.inject import Defaults, inject
from tests.bed.net import free_port
from tests.bed.pod import Pod, Supervisor, Writer, row_ids, supervisor_cmd

pytestmark = pytest.mark.bed
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "admission"


def host_paths(pod: dict[str, Any], container: dict[str, Any], bed_pod: Pod,
               volumes: dict[str, Path]) -> dict[str, Path]:
    """mountPath -> host directory, as the kubelet would mount each volume."""
    out = {}
    for m in container["volumeMounts"]:
        source = next(v for v in pod["spec"]["volumes"] if v["name"] == m["name"])
        if "projected" in source:
            out[m["mountPath"]] = bed_pod.projector.dir
        else:
            out[m["mountPath"]] = volumes.setdefault(m["name"], bed_pod.root / "volumes" / m["name"])
            out[m["mountPath"]].mkdir(parents=True, exist_ok=True)
    return out


def translate(value: str, mounts: dict[str, Path]) -> str:
    for mount, host in sorted(mounts.items(), key=lambda kv: -len(kv[0])):
        if value == mount or value.startswith(mount + "/"):
            return str(host) + value[len(mount):]
    return value


def run_env(pod: dict[str, Any], container: dict[str, Any], mounts: dict[str, Path], bed_pod: Pod) -> dict[str, str]:
    fields = {"metadata.name": pod["metadata"]["name"], "metadata.namespace": "shop", "metadata.uid": bed_pod.uid,
              "spec.serviceAccountName": pod["spec"].get("serviceAccountName", "default"),
              "metadata.labels['pod-template-hash']": pod["metadata"]["labels"].get("pod-template-hash", "")}
    env = {k: v for k, v in bed_pod.env().items() if not k.startswith(("AWS_", "POD_", "LITESTREAM_"))}
    for item in container["env"]:
        value = item["value"] if "value" in item else fields[item["valueFrom"]["fieldRef"]["fieldPath"]]
        env[item["name"]] = translate(value, mounts)
    env["TMPDIR"] = str(mounts["/tmp"])
    env["LITESTREAM_SUPERVISOR_LOG_FORMAT"] = "json"
    return env


def admit(bed_pod: Pod, name: str) -> dict[str, Any]:
    pod = json.loads((FIXTURES / "deployment-own-data-volume.pod.json").read_text())
    pod["metadata"]["name"] = name
    bed = bed_pod.bed
    defaults = Defaults(image="unused-here", bucket=bed.role.bucket, endpoint=bed.endpoint, role_arn=bed.role.arn,
                        region=bed.region)
    pod["metadata"]["annotations"]["litestream-supervisor.io/replica-path"] = f"{bed_pod.prefix}/app.db"
    return jsonpatch.apply_patch(copy.deepcopy(pod), inject(pod, defaults, "shop").patch)


def test_a_patched_pod_runs_restores_replicates_and_hands_over_every_row(pod: Pod) -> None:
    volumes: dict[str, Path] = {}
    first = admit(pod, "web-7d4b9c8f6d-aaaaa")
    restore_c = next(c for c in first["spec"]["initContainers"] if c["name"] == "litestream-restore")
    sidecar_c = next(c for c in first["spec"]["initContainers"] if c["name"] == "litestream")
    assert sidecar_c["restartPolicy"] == "Always"

    def run(container: dict[str, Any], patched: dict[str, Any]) -> tuple[list[str], dict[str, str]]:
        mounts = host_paths(patched, container, pod, volumes)
        return [*container["args"]], run_env(patched, container, mounts, pod)

    args, env = run(restore_c, first)
    out = subprocess.run(supervisor_cmd(*args), env=env, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    args, env = run(sidecar_c, first)
    port = free_port()
    args[args.index("--health-addr") + 1] = f"127.0.0.1:{port}"
    log = pod.root / "sidecar.log"
    with open(log, "wb") as handle:
        proc = subprocess.Popen(supervisor_cmd(*args), env=env, stdout=handle, stderr=subprocess.STDOUT)
    pod.procs.append(proc)
    sup = Supervisor(proc, log, pod, port)
    sup.wait_ready()
    # the app: its own mount of the same volume
    app_mount = next(m for m in first["spec"]["containers"][0]["volumeMounts"] if m["name"] == "data")["mountPath"]
    db_in_app = posixpath.join(app_mount, "app.db")
    db = Path(translate(db_in_app, {app_mount: volumes["data"]}))
    assert env["LITESTREAM_SUPERVISOR_DB"] == str(db)  # the sidecar sees the very same file
    writer = Writer(db, 0.02).start()
    time.sleep(2)
    committed = writer.stop()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, sup.output()[-3000:]
    # a second patched pod, a fresh volume, restores every row
    volumes.clear()
    pod.uid = "second-" + pod.uid
    second = admit(pod, "web-7d4b9c8f6d-bbbbb")
    restore_c = next(c for c in second["spec"]["initContainers"] if c["name"] == "litestream-restore")
    args, env = run(restore_c, second)
    out = subprocess.run(supervisor_cmd(*args), env=env, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert row_ids(Path(env["LITESTREAM_SUPERVISOR_DB"])) == committed
