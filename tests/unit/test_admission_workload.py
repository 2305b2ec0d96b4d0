"""The workload the webhook and `inject` set (issue 25), over Kubernetes' real naming rules.

Sources for the rules encoded here (not taken from the code under test):
- apiserver `names.SimpleNameGenerator`: a `generateName` base is cut to 63 - 5 = 58 characters and
  5 random characters are appended (k8s.io/apiserver/pkg/storage/names/generate.go);
- those come from `utilrand.String`, alphabet "bcdfghjklmnpqrstvwxz2456789" (no vowels, no 0/1/3;
  k8s.io/apimachinery/pkg/util/rand/rand.go), and so does a pod-template-hash (`SafeEncodeString`);
- the Deployment controller names its ReplicaSet `<deployment>-<pod-template-hash>` and labels the
  pods `pod-template-hash`; the ReplicaSet controller creates pods with `generateName: <rs>-`
  (pkg/controller/controller_utils.go); Argo Rollouts label `rollouts-pod-template-hash`.
At admission the pod may have no `name` yet (it is generated after mutating admission) and no
namespace in the object; its controller `ownerReferences` entry is there.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import jsonpatch
import pytest

from supervisor.admission.documents import inject_documents
from supervisor.admission.inject import Defaults, Refused, inject
from supervisor.core import workload as workloads
from tests.k8s_rules import pod_problems

ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
MAX_BASE = 63 - 5
DEFAULTS = Defaults(image="litestream-supervisor:0.1.0", bucket="litestream", endpoint="http://minio.minio.svc:9000",
                    role_arn="arn:minio:iam:::role/oxnUw3DAuQF1uggjXGxI2AmW8IA")


def random_string(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(n))


def generated(base: str, rng: random.Random) -> str:
    return base[:MAX_BASE] + random_string(rng, 5)


def deployment_name(rng: random.Random, length: int) -> str:
    words = "orders-billing-archive-service-reporting-backend-worker-east-primary-api"
    name = (words * 2)[:length].strip("-")
    return name + "x" * (length - len(name))  # exactly `length` characters, a valid name


def admitted_pod(meta: dict[str, Any], with_name: bool) -> dict[str, Any]:
    """A pod as the webhook receives it: defaults applied, maybe no name and no namespace."""
    if not with_name:
        meta = {k: v for k, v in meta.items() if k != "name"}
    labels = {**meta.get("labels", {}), "litestream-supervisor.io/inject": "true"}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {**meta, "labels": labels, "annotations": {"litestream-supervisor.io/db": "/data/app.db"}},
            "spec": {"serviceAccountName": "default", "containers": [{
                "name": "app", "image": "app:1", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                "volumes": [{"name": "data", "emptyDir": {}}]}}


def injected_env(pod: dict[str, Any], **kw: Any) -> dict[str, Any]:
    result = jsonpatch.apply_patch(pod, inject(pod, DEFAULTS, "shop", **kw).patch)
    assert pod_problems(result["spec"], configmaps={}) == []  # $(VAR) defined before use, among others
    (restore,) = [c for c in result["spec"]["initContainers"] if c["name"] == "litestream-restore"]
    return {e["name"]: e.get("value") for e in restore["env"]}


def replica_path(env: dict[str, Any], pod_name: str, template_hash: str | None) -> str:
    """What the runtime makes of the env as the kubelet resolves it (downward API + $(VAR))."""
    resolved = {"POD_NAMESPACE": "shop", "POD_SERVICE_ACCOUNT": "default", "POD_NAME": pod_name,
                "POD_TEMPLATE_HASH": template_hash or ""}
    workload = (env.get("LITESTREAM_SUPERVISOR_WORKLOAD") or "").replace("$(POD_NAME)", pod_name) or None
    return workloads.default_replica_path(resolved, Path("/data/app.db"), workload)


def deployment_pod(name: str, rng: random.Random, with_name: bool) -> tuple[dict[str, Any], str, str]:
    template_hash = random_string(rng, rng.choice([8, 9, 10]))
    rs = f"{name}-{template_hash}"
    pod_name = generated(f"{rs}-", rng)
    meta = {"name": pod_name, "generateName": f"{rs}-", "labels": {"pod-template-hash": template_hash},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs, "uid": "u",
                                 "controller": True, "blockOwnerDeletion": True}]}
    return admitted_pod(meta, with_name), pod_name, template_hash


@pytest.mark.parametrize("length", range(40, 64))
def test_a_deployments_pods_all_get_its_exact_name(length: int) -> None:
    """Names of 40 to 63 characters: from ~47 on, the pod name has lost part of the hash (the cut
    base); every pod, whatever its random suffix, gets the Deployment's name and one replica path."""
    rng = random.Random(length)
    name = deployment_name(rng, length)
    paths = set()
    for attempt in range(4):
        template_hash = random_string(rng, 10)
        rs = f"{name}-{template_hash}"
        pod_name = generated(f"{rs}-", rng)
        meta = {"name": pod_name, "generateName": f"{rs}-", "labels": {"pod-template-hash": template_hash},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs, "uid": "u",
                                     "controller": True}]}
        env = injected_env(admitted_pod(meta, with_name=attempt % 2 == 0))
        assert env["LITESTREAM_SUPERVISOR_WORKLOAD"] == name
        assert pod_name[-5:] not in env["LITESTREAM_SUPERVISOR_WORKLOAD"][len(name) - 5:]  # no random suffix
        assert env["POD_TEMPLATE_HASH"] is None  # still there (a fieldRef): the runtime's fallback
        paths.add(replica_path(env, pod_name, template_hash))
        if len(f"{rs}-") > MAX_BASE:
            # what the pod's own name still says: not the Deployment's name (the old derivation's bug)
            assert not pod_name.startswith(f"{rs}-")
    assert paths == {f"system:serviceaccount:shop:default/{name}/app.db"}


@pytest.mark.parametrize("with_name", [True, False])
def test_an_argo_rollouts_pods_get_the_rollouts_name(with_name: bool) -> None:
    rng = random.Random(7)
    name = deployment_name(rng, 52)
    template_hash = random_string(rng, 10)
    rs = f"{name}-{template_hash}"
    pod_name = generated(f"{rs}-", rng)
    meta = {"name": pod_name, "generateName": f"{rs}-", "labels": {"rollouts-pod-template-hash": template_hash},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs, "controller": True}]}
    env = injected_env(admitted_pod(meta, with_name))
    assert env["LITESTREAM_SUPERVISOR_WORKLOAD"] == name
    assert replica_path(env, pod_name, None) == f"system:serviceaccount:shop:default/{name}/app.db"


@pytest.mark.parametrize("length", [5, 40, 58, 63])
def test_a_bare_replicasets_pods_get_the_replicasets_name(length: int) -> None:
    rng = random.Random(length)
    rs = deployment_name(rng, length)
    paths = set()
    for _ in range(3):
        pod_name = generated(f"{rs}-", rng)
        meta = {"name": pod_name, "generateName": f"{rs}-", "labels": {"app": "x"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs, "controller": True}]}
        env = injected_env(admitted_pod(meta, with_name=True))
        assert env["LITESTREAM_SUPERVISOR_WORKLOAD"] == rs
        paths.add(replica_path(env, pod_name, None))
    assert paths == {f"system:serviceaccount:shop:default/{rs}/app.db"}


@pytest.mark.parametrize("ordinal", [0, 1, 12])
def test_a_statefulset_pod_is_its_own_workload(ordinal: int) -> None:
    """Each ordinal its own database; at admission the pod has its final name (set by the controller)."""
    name = f"{deployment_name(random.Random(ordinal), 50)}-{ordinal}"
    meta = {"name": name, "labels": {"statefulset.kubernetes.io/pod-name": name,
                                     "apps.kubernetes.io/pod-index": str(ordinal)},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": name.rsplit("-", 1)[0],
                                 "controller": True}]}
    assert injected_env(admitted_pod(meta, with_name=True))["LITESTREAM_SUPERVISOR_WORKLOAD"] == name
    # no name in the object (it never happens for StatefulSet pods, but the label says it)
    assert injected_env(admitted_pod(meta, with_name=False))["LITESTREAM_SUPERVISOR_WORKLOAD"] == name


def test_a_pod_with_a_fixed_name_and_no_controller_is_its_own_workload() -> None:
    env = injected_env(admitted_pod({"name": "notes-db"}, with_name=True))
    assert env["LITESTREAM_SUPERVISOR_WORKLOAD"] == "notes-db"


@pytest.mark.parametrize(("meta", "why"), [
    ({"generateName": "pi-", "labels": {"batch.kubernetes.io/job-name": "pi"},
      "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "pi", "controller": True}]}, "Job pi"),
    ({"generateName": "web-", "ownerReferences": [{"apiVersion": "apps.kruise.io/v1alpha1", "kind": "CloneSet",
                                                   "name": "web", "controller": True}]}, "CloneSet web"),
    ({"generateName": "scratch-"}, "generated name and no controller"),
    ({"generateName": "web-5d8f-", "labels": {"pod-template-hash": "7777"},
      "ownerReferences": [{"kind": "ReplicaSet", "name": "web-5d8f", "controller": True}]}, "does not end in"),
])
def test_a_pod_whose_workload_is_not_exact_is_refused_naming_the_annotation(meta: dict[str, Any], why: str) -> None:
    pod = admitted_pod(meta, with_name=False)
    with pytest.raises(Refused, match=f"{why}.*litestream-supervisor.io/workload"):
        inject(pod, DEFAULTS, "shop")
    # ... unless the annotation says it, or the replica path is fixed
    pod["metadata"]["annotations"]["litestream-supervisor.io/workload"] = "pi-calculator"
    assert injected_env(pod)["LITESTREAM_SUPERVISOR_WORKLOAD"] == "pi-calculator"
    del pod["metadata"]["annotations"]["litestream-supervisor.io/workload"]
    pod["metadata"]["annotations"]["litestream-supervisor.io/replica-path"] = "jobs/pi/app.db"
    env = injected_env(pod)
    assert "LITESTREAM_SUPERVISOR_WORKLOAD" not in env and env["LITESTREAM_SUPERVISOR_REPLICA_PATH"]


def test_the_annotation_overrides_the_owner_and_must_be_a_name() -> None:
    pod, _, _ = deployment_pod("web", random.Random(1), with_name=False)
    pod["metadata"]["annotations"]["litestream-supervisor.io/workload"] = "web-v2"
    assert injected_env(pod)["LITESTREAM_SUPERVISOR_WORKLOAD"] == "web-v2"
    pod["metadata"]["annotations"]["litestream-supervisor.io/workload"] = "Web V2"
    with pytest.raises(Refused, match=r"litestream-supervisor\.io/workload: expected a Kubernetes object name"):
        inject(pod, DEFAULTS, "shop")


def _template(kind: str, name: str, api: str = "apps/v1") -> dict[str, Any]:
    return {"apiVersion": api, "kind": kind, "metadata": {"name": name},
            "spec": {"replicas": 1, "template": {
                "metadata": {"labels": {"litestream-supervisor.io/inject": "true"},
                             "annotations": {"litestream-supervisor.io/db": "/data/app.db"}},
                "spec": {"containers": [{"name": "app", "image": "app:1",
                                         "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                         "volumes": [{"name": "data", "emptyDir": {}}]}}}}


@pytest.mark.parametrize(("kind", "api", "expected"), [
    ("Deployment", "apps/v1", "orders-api"), ("ReplicaSet", "apps/v1", "orders-api"),
    ("Rollout", "argoproj.io/v1alpha1", "orders-api"), ("StatefulSet", "apps/v1", "$(POD_NAME)"),
])
def test_inject_file_takes_the_workloads_own_name_or_each_statefulset_pods(kind: str, api: str,
                                                                         expected: str) -> None:
    (out,), _ = inject_documents([_template(kind, "orders-api", api)], DEFAULTS)
    pod = out["spec"]["template"]["spec"]
    for c in pod["initContainers"]:
        names = [e["name"] for e in c["env"]]
        assert {e["name"]: e.get("value") for e in c["env"]}["LITESTREAM_SUPERVISOR_WORKLOAD"] == expected
        assert names.index("POD_NAME") < names.index("LITESTREAM_SUPERVISOR_WORKLOAD")
    assert pod_problems(pod, configmaps={}) == []
    if kind == "StatefulSet":  # the kubelet expands it to each pod's own name
        env = {e["name"]: e.get("value") for e in pod["initContainers"][0]["env"]}
        assert replica_path(env, "orders-api-1", None) == "system:serviceaccount:shop:default/orders-api-1/app.db"
