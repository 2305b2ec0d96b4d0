"""A pod patched by the injection, or rendered by the Component, runs on the bed exactly as its spec
says (issues 14 and 25): the restore and replicate containers get the spec's args, env and mounts
(the projected token volume is the kubelet projector's directory, an emptyDir a temp dir, envFrom
and $(VAR) resolved as the kubelet does); an app writes; SIGTERM; a replacement pod restores every
row.

Replacement pods are named as the API server names them: `generateName` `<replicaset>-` cut to 58
characters plus 5 random characters (a long Deployment name loses part of its pod-template-hash
from its pods' names), a different suffix each time, and no replica-path: the default path, from the
workload the webhook or the Component set, must be the predecessor's.
"""

from __future__ import annotations

import copy
import json
import os
import posixpath
import random
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
import yaml

from supervisor.admission.inject import Defaults, inject
from tests.bed.net import free_port
from tests.bed.pod import CAPTURED, Pod, Supervisor, Writer, row_ids, supervisor_cmd

pytestmark = pytest.mark.bed
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "admission"
MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # k8s.io/apimachinery/pkg/util/rand
VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def generated_name(generate_name: str, rng: random.Random) -> str:
    """The API server's SimpleNameGenerator: the base cut to 63 - 5 characters, 5 random ones appended."""
    return generate_name[:58] + "".join(rng.choice(ALPHABET) for _ in range(5))


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


def run_env(pod: dict[str, Any], container: dict[str, Any], mounts: dict[str, Path], bed_pod: Pod,
            configmaps: dict[str, dict[str, Any]] | None = None) -> dict[str, str]:
    """The container's environment as the kubelet builds it: envFrom, then env in order with the
    downward API and $(VAR) expansion of variables defined before; paths moved to the host dirs."""
    labels = pod["metadata"].get("labels") or {}
    fields = {"metadata.name": pod["metadata"]["name"], "metadata.namespace": "shop", "metadata.uid": bed_pod.uid,
              "spec.serviceAccountName": pod["spec"].get("serviceAccountName", "default"),
              "metadata.labels['pod-template-hash']": labels.get("pod-template-hash", "")}
    env = {k: v for k, v in bed_pod.env().items() if not k.startswith(("AWS_", "POD_", "LITESTREAM_"))}
    defined: dict[str, str] = {}
    for source in container.get("envFrom", []):
        defined.update((configmaps or {})[source["configMapRef"]["name"]]["data"])
    for item in container["env"]:
        if "value" in item:
            value = VAR_REF.sub(lambda m: defined.get(m[1], m[0]), item["value"])
        else:
            value = fields[item["valueFrom"]["fieldRef"]["fieldPath"]]
        defined[item["name"]] = value
    env.update({k: translate(v, mounts) for k, v in defined.items()})
    env["TMPDIR"] = str(mounts["/tmp"])
    env["LITESTREAM_SUPERVISOR_LOG_FORMAT"] = "json"
    return env


class PodLife:
    """One pod of the spec on the bed: restore, the native sidecar, an app writing, SIGTERM."""

    def __init__(self, pod: dict[str, Any], bed_pod: Pod, volumes: dict[str, Path],
                 configmaps: dict[str, dict[str, Any]] | None = None) -> None:
        self.pod, self.bed_pod, self.volumes, self.configmaps = pod, bed_pod, volumes, configmaps
        init = pod["spec"]["initContainers"]
        self.restore_c = next(c for c in init if c["name"] == "litestream-restore")
        self.sidecar_c = next(c for c in init if c["name"] == "litestream")
        assert self.sidecar_c["restartPolicy"] == "Always"

    def env(self, container: dict[str, Any]) -> dict[str, str]:
        mounts = host_paths(self.pod, container, self.bed_pod, self.volumes)
        return run_env(self.pod, container, mounts, self.bed_pod, self.configmaps)

    def restore(self) -> dict[str, str]:
        env = self.env(self.restore_c)
        out = subprocess.run(supervisor_cmd(*self.restore_c["args"]), env=env, capture_output=True, text=True,
                             timeout=120, check=False)
        CAPTURED.append(out.stdout + out.stderr)
        assert out.returncode == 0, out.stderr[-2000:]
        return env

    def replicate_while_the_app_writes(self, app_db: Path) -> list[int]:
        args = [*self.sidecar_c["args"]]
        port = free_port()
        args[args.index("--health-addr") + 1] = f"127.0.0.1:{port}"
        env = self.env(self.sidecar_c)
        assert env["LITESTREAM_SUPERVISOR_DB"] == str(app_db)  # the sidecar sees the app's very file
        log = self.bed_pod.root / f"sidecar-{uuid.uuid4().hex[:6]}.log"
        with open(log, "wb") as handle:
            proc = subprocess.Popen(supervisor_cmd(*args), env=env, stdout=handle, stderr=subprocess.STDOUT)
        self.bed_pod.procs.append(proc)
        sup = Supervisor(proc, log, self.bed_pod, port)
        sup.wait_ready()
        writer = Writer(app_db, 0.02).start()
        time.sleep(2)
        committed = writer.stop()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, sup.output()[-3000:]
        CAPTURED.append(sup.output())
        return committed


def app_db(pod: dict[str, Any], volumes: dict[str, Path], db_name: str) -> Path:
    """The database as the app container opens it, through its own mount of the data volume."""
    mount = next(m for m in pod["spec"]["containers"][0]["volumeMounts"] if m["name"] == "data")["mountPath"]
    return Path(translate(posixpath.join(mount, db_name), {mount: volumes["data"]}))


def admit(bed_pod: Pod, pod: dict[str, Any]) -> dict[str, Any]:
    bed = bed_pod.bed
    defaults = Defaults(image="unused-here", bucket=bed.role.bucket, endpoint=bed.endpoint, role_arn=bed.role.arn,
                        region=bed.region)
    return jsonpatch.apply_patch(copy.deepcopy(pod), inject(pod, defaults, "shop").patch)


def test_a_patched_pod_runs_restores_replicates_and_hands_over_every_row(pod: Pod) -> None:
    """A fixed replica-path: the patch's own env and mounts carry a whole pod life."""
    volumes: dict[str, Path] = {}
    fixture = json.loads((FIXTURES / "deployment-own-data-volume.pod.json").read_text())
    fixture["metadata"]["annotations"]["litestream-supervisor.io/replica-path"] = f"{pod.prefix}/app.db"
    first = admit(pod, fixture)
    first["metadata"]["name"] = "web-7d4b9c8f6d-aaaaa"
    life = PodLife(first, pod, volumes)
    life.restore()
    committed = life.replicate_while_the_app_writes(app_db(first, volumes, "app.db"))
    volumes.clear()  # a second patched pod, a fresh volume, restores every row
    pod.uid = "second-" + pod.uid
    second = admit(pod, fixture)
    second["metadata"]["name"] = "web-7d4b9c8f6d-bbbbb"
    env = PodLife(second, pod, volumes).restore()
    assert row_ids(Path(env["LITESTREAM_SUPERVISOR_DB"])) == committed


def replacement_pods(bed_pod: Pod, template: dict[str, Any], deployment: str, rng: random.Random,
                     configmaps: dict[str, dict[str, Any]] | None, admitted: bool) -> None:
    """Two pods of one long-named Deployment's ReplicaSet, with different random suffixes: the second
    restores every row the first committed, from the default replica path."""
    template_hash = "".join(rng.choice(ALPHABET) for _ in range(10))
    rs = f"{deployment}-{template_hash}"
    volumes: dict[str, Path] = {}
    committed: list[int] = []
    names = []
    for round_ in range(2):
        meta = copy.deepcopy(template.get("metadata") or {})
        meta.update(generateName=f"{rs}-", namespace="shop",
                    labels={**meta.get("labels", {}), "pod-template-hash": template_hash},
                    ownerReferences=[{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs, "uid": "rs-uid",
                                      "controller": True, "blockOwnerDeletion": True}])
        spec = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": copy.deepcopy(template["spec"])}
        spec = admit(bed_pod, spec) if admitted else spec  # the webhook sees it before it has a name
        spec["metadata"]["name"] = generated_name(f"{rs}-", rng)
        names.append(spec["metadata"]["name"])
        assert not spec["metadata"]["name"].startswith(f"{rs}-")  # the hash is cut: the name cannot tell
        bed_pod.uid = f"{round_}-{uuid.uuid4()}"
        volumes.clear()
        life = PodLife(spec, bed_pod, volumes, configmaps)
        env = life.restore()
        assert env["LITESTREAM_SUPERVISOR_WORKLOAD"] == deployment
        assert "LITESTREAM_SUPERVISOR_REPLICA_PATH" not in env  # the default path
        db = Path(env["LITESTREAM_SUPERVISOR_DB"])
        if round_ == 0:
            assert not db.exists()  # a genuinely empty replica
            committed = life.replicate_while_the_app_writes(app_db(spec, volumes, db.name))
        else:
            assert row_ids(db) == committed and committed
    assert names[0] != names[1]
    replica = f"system:serviceaccount:shop:{template['spec'].get('serviceAccountName', 'default')}/{deployment}/"
    keys = [o["Key"] for o in bed_pod.bed.admin_s3().list_objects_v2(
        Bucket=bed_pod.bed.role.bucket, Prefix=replica).get("Contents", [])]
    assert keys, f"nothing under {replica}"


def long_name(rng: random.Random) -> str:
    return f"orders-archive-reporting-{uuid.uuid4().hex[:8]}-backend-service-x"[:52]


def test_webhook_replacement_pods_of_a_long_named_deployment_share_the_replica(pod: Pod) -> None:
    rng = random.Random()
    fixture = json.loads((FIXTURES / "deployment-own-data-volume.pod.json").read_text())
    template = {"metadata": {"labels": {k: v for k, v in fixture["metadata"]["labels"].items()
                                        if k != "pod-template-hash"},
                             "annotations": {"litestream-supervisor.io/db": "/data/app.db"}},
                "spec": fixture["spec"]}
    replacement_pods(pod, template, long_name(rng), rng, configmaps=None, admitted=True)


def test_component_replacement_pods_of_a_long_named_deployment_share_the_replica(pod: Pod, tmp_path: Path) -> None:
    """Rendered by `kubectl kustomize` with both Components, settings pointing at the bed."""
    rng = random.Random()
    name = long_name(rng)
    root = tmp_path / "app"
    root.mkdir()
    (root / "app.yaml").write_text(yaml.safe_dump({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"litestream-supervisor.io/enabled": "true"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "orders"}}, "template": {
            "metadata": {"labels": {"app": "orders"}},
            "spec": {"serviceAccountName": "orders", "terminationGracePeriodSeconds": 60,
                     "containers": [{"name": "orders", "image": "orders:1",
                                     "volumeMounts": [{"name": "data", "mountPath": "/var/lib/orders"}]}],
                     "volumes": [{"name": "data", "emptyDir": {}}]}}}}))
    bed = pod.bed
    settings = {"AWS_ROLE_ARN": bed.role.arn, "AWS_ENDPOINT_URL_STS": bed.endpoint, "AWS_ENDPOINT_URL_S3": bed.endpoint,
                "AWS_REGION": bed.region, "LITESTREAM_SUPERVISOR_BUCKET": bed.role.bucket,
                "LITESTREAM_SUPERVISOR_DB_NAME": "orders.db"}
    patch = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "litestream-supervisor-settings"},
             "data": settings}
    components = [os.path.relpath(MANIFESTS / "components" / c, root)
                  for c in ("litestream", "litestream-workload-name")]
    (root / "kustomization.yaml").write_text(yaml.safe_dump({
        "namespace": "shop", "resources": ["app.yaml"], "components": components,
        "patches": [{"patch": yaml.safe_dump(patch)}]}))
    out = subprocess.run(["kubectl", "kustomize", str(root)], capture_output=True, text=True, timeout=60, check=True)
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    configmaps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    replacement_pods(pod, deployment["spec"]["template"], name, rng, configmaps, admitted=False)
