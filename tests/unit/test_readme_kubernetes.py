"""README's Kubernetes path, followed from zero as a new user would (issue 28): its shell blocks
run as written, in a copy of the repository, with `kubectl apply -k` replaced by a real
`kubectl kustomize` render and stubs for what needs a cluster, a registry, Helm or `mc` (each stub
checks what it can: files named exist, namespaced commands carry -n). Then the renders are checked."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.k8s_rules import pod_problems

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"

STUBS = r'''
set -euo pipefail
kubectl() {
  case "$1 ${2:-}" in
    "apply -k") command kubectl kustomize "$3" > "$RENDERS/$(echo "$3" | tr / _).yaml" ;;
    "apply -f") cat > "$RENDERS/stdin-$((++STDIN)).yaml" ;;
    "kustomize "*) command kubectl "$@" ;;
    "get services") echo "minio  minio  ClusterIP  10.96.0.10  <none>  9000/TCP" ;;
    "-n "*) echo "kubectl $*" >> "$RENDERS/cluster-commands" ;;
    *) echo "kubectl $*: a namespaced command without -n" >&2; return 1 ;;
  esac
}
docker() {
  if [[ $1 == build ]] && ! [[ $2 == -f && -f $3 && ${!#} == . ]]; then
    echo "docker $*: no such Dockerfile, or not the repository root as context" >&2; return 1
  fi
  echo "docker $*" >> "$RENDERS/cluster-commands"
}
helm() {
  echo "helm $*" >> "$RENDERS/cluster-commands"
  case "$1" in
    repo) ;;
    template) cat "$HELM_TEMPLATE_OUTPUT" ;;
    *) echo "helm $*: not stubbed" >&2; return 1 ;;
  esac
}
mc() { if [[ "$1 $2" == "admin policy" ]]; then [[ -f ${!#} ]]; fi; }
litestream-supervisor() { "$PYTHON" -m supervisor "$@"; }
STDIN=0
'''


def blocks(after: str, until: str) -> str:
    text = README.read_text()
    section = text.split(after, 1)[1].split(until, 1)[0]
    return "\n".join(re.findall(r"```sh\n(.*?)```", section, flags=re.S))


def docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_the_kubernetes_path_from_zero(tmp_path: Path) -> None:
    clone = tmp_path / "litestream-supervisor"
    shutil.copytree(ROOT / "manifests", clone / "manifests")
    shutil.copytree(ROOT / "images", clone / "images", ignore=shutil.ignore_patterns("wheels"))
    renders = tmp_path / "renders"
    renders.mkdir()
    script = STUBS + blocks("### From zero to a running app", "## Admission webhook") + \
        blocks("## Admission webhook and `inject`", "## Troubleshooting")
    out = subprocess.run(["bash", "-c", script], cwd=clone, capture_output=True, text=True, timeout=300, check=False,
                         env={**os.environ, "RENDERS": str(renders), "PYTHON": sys.executable, "PYTHONPATH": str(ROOT),
                              "HELM_TEMPLATE_OUTPUT": str(ROOT / "tests/workloads/minio-helm/minio.yaml")})
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]

    # MinIO patched by its Component
    (minio,) = [d for d in docs(renders / "minio-patched.yaml") if d["kind"] == "Deployment"]
    assert {"configMapRef": {"name": "minio-openid"}} in minio["spec"]["template"]["spec"]["containers"][0]["envFrom"]
    # the app: its namespace is created, its settings point at MinIO, its containers at the pushed image
    app = docs(renders / "my-app.yaml")
    assert [d["metadata"]["name"] for d in app if d["kind"] == "Namespace"] == ["notes"]
    (settings,) = [d for d in app if d["kind"] == "ConfigMap"]
    assert settings["data"]["AWS_ENDPOINT_URL_S3"] == settings["data"]["AWS_ENDPOINT_URL_STS"] == \
        "http://minio.minio.svc:9000"
    (sts,) = [d for d in app if d["kind"] == "StatefulSet"]
    ours = [c for c in sts["spec"]["template"]["spec"]["initContainers"] if c["name"].startswith("litestream")]
    assert {c["image"] for c in ours} == {"registry.example.com/litestream-supervisor:0.1.0"}
    (verify,) = [d for d in app if d["kind"] == "CronJob"]  # the example's daily restore came along
    assert verify["metadata"]["name"] == "litestream-verify-app"
    assert all(d["metadata"].get("namespace") == "notes" for d in app if d["kind"] != "Namespace")
    # the webhook path: installs, the example app opts in, offline injection gives valid pods
    assert (renders / "manifests_webhook.yaml").exists() and (renders / "manifests_policy.yaml").exists()
    example = docs(renders / "manifests_examples_app-webhook.yaml")
    assert [d["metadata"]["name"] for d in example if d["kind"] == "Namespace"] == ["guestbook"]
    (injected,) = [d for d in docs(renders / "stdin-1.yaml") if d["kind"] == "Deployment"]
    pod = injected["spec"]["template"]["spec"]
    assert {c["image"] for c in pod["initContainers"]} == {"registry.example.com/litestream-supervisor:0.1.0"}
    assert pod_problems(pod, configmaps={}) == []
    # what needs a cluster: every namespaced command names its namespace
    cluster = (renders / "cluster-commands").read_text().splitlines()
    assert any("exec statefulset/app -c litestream -- litestream-supervisor health" in c for c in cluster)
    assert any(c.startswith("docker push") for c in cluster)
    # MinIO's chart: its repository added first (a fresh helm knows no `minio/` repo), and not its
    # defaults (mode distributed: a StatefulSet of 16 replicas with 16Gi each, and no Deployment
    # for the Component to patch), one standalone server instead
    helm = [c for c in cluster if c.startswith("helm ")]
    assert helm[0] == "helm repo add minio https://charts.min.io/"
    (template,) = [c for c in helm if c.startswith("helm template")]
    settings = dict(kv.split("=", 1) for kv in template.split("--set ", 1)[1].split()[0].split(","))
    assert settings == {"mode": "standalone", "replicas": "1", "persistence.size": "10Gi",
                        "resources.requests.memory": "512Mi"}


def test_the_readme_offers_argo_cd_the_one_time_patch_too() -> None:
    """Whether `rollingUpdate: null` clears the defaulted block under Argo CD's server-side apply is
    disputed (SSA keeps nulls: kubernetes-sigs/structured-merge-diff#235; reports of Argo CD
    dropping them), so the README gives Argo CD the same one-time patch as Flux."""
    text = README.read_text()
    adopting = text.split("**Adopting a Deployment that already runs**", 1)[1].split("```sh", 1)[0]
    assert "Argo CD" in adopting and "Flux" in adopting
    assert "ServerSideApply=true" in adopting.split("need one step", 1)[0].rsplit(". ", 1)[-1]


def test_every_kubectl_line_in_the_readmes_names_its_namespace() -> None:
    """`kubectl logs/exec/rollout/port-forward` without -n run in whatever namespace is current."""
    for doc in [README, *(ROOT / "manifests").rglob("README.md")]:
        for line in doc.read_text().splitlines():
            for cmd in re.findall(r"kubectl (?:[^`|;]*?)(?:logs|exec|rollout|port-forward)\b[^`|;]*", line):
                assert re.search(r"(^| )(-n|--namespace)[ =]", cmd), f"{doc.name}: {cmd}"


def test_the_rgw_setup_job_names_the_examples_service_account() -> None:
    """The Job's role trusts exactly one service account's `sub`: it must be the one the example's
    pods run as, or STS refuses them."""
    from tests.unit.test_manifests import kustomize
    (job,) = [d for d in kustomize("ceph-rgw") if d["kind"] == "Job"]
    env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    app = kustomize("examples/app-base")
    (sts,) = [d for d in app if d["kind"] == "StatefulSet"]
    (sa,) = [d for d in app if d["kind"] == "ServiceAccount"]
    assert sts["spec"]["template"]["spec"]["serviceAccountName"] == sa["metadata"]["name"]
    assert (env["LITESTREAM_SUPERVISOR_SA_NAMESPACE"], env["LITESTREAM_SUPERVISOR_SERVICE_ACCOUNT"]) == \
        (sa["metadata"]["namespace"], sa["metadata"]["name"])


def test_a_minio_component_without_minio_in_the_build_fails_instead_of_doing_nothing() -> None:
    """A kustomize patch whose target matches nothing is silently skipped: `kubectl apply -k` of the
    Component alone applied the settings and left MinIO unpatched. Now the build stops, naming it."""
    for variant, kind in (("helm-deployment", "Deployment"), ("root-statefulset", "StatefulSet")):
        out = subprocess.run(["kubectl", "kustomize", str(ROOT / "manifests/minio" / variant)], capture_output=True,
                             text=True, timeout=60, check=False)
        assert out.returncode != 0 and f"nothing selected by {kind}" in out.stderr and "minio" in out.stderr
