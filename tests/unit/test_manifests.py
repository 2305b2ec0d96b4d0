"""Every kustomization builds, validates strictly (1.29 and newest), is hardened, and its
containers' args and env are accepted by litestream-supervisor itself."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
WORKLOADS = ROOT / "tests" / "workloads"
BUILDS = ["base", "legacy-sidecar", "examples/app-base", "examples/app-component", "minio",
          WORKLOADS / "minio-helm", WORKLOADS / "minio-root"]
WORKLOAD_BUILDS = ["base", "legacy-sidecar", "examples/app-base", "examples/app-component"]
K8S_VERSIONS = ["1.29.0", None]  # None: kubernetes-validate's newest


def kustomize(path: str | Path) -> list[dict]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl (with kustomize) is required: it ships with this machine image"
    out = subprocess.run([kubectl, "kustomize", str(MANIFESTS / path)], capture_output=True, text=True,
                         check=True, timeout=60)
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def validator() -> str:
    found = Path(sys.executable).parent / "kubernetes-validate"
    assert found.exists(), "pip install kubernetes-validate (make venv)"
    return str(found)


@pytest.mark.parametrize("path", BUILDS)
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_builds_and_validates_strictly(tmp_path: Path, path: str, version: str | None) -> None:
    docs = kustomize(path)
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(yaml.safe_dump_all(docs))
    cmd = [validator(), "--strict", "--quiet", str(rendered)]
    if version:
        cmd[1:1] = ["-k", version]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def workloads(docs: list[dict]) -> list[dict]:
    return [d for d in docs if d["kind"] in ("StatefulSet", "Deployment")]


def ours(pod: dict) -> list[dict]:
    return [c for c in pod.get("initContainers", []) + pod["containers"] if "litestream-supervisor" in c["image"]]


@pytest.mark.parametrize("path", WORKLOAD_BUILDS)
def test_workloads_are_hardened(path: str) -> None:
    for w in workloads(kustomize(path)):
        pod = w["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        for c in pod.get("initContainers", []) + pod["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
        names = [c["name"] for c in ours(pod)]
        assert names.count("litestream-restore") == 1 and names.count("litestream") == 1
        sidecar = next(c for c in ours(pod) if c["name"] == "litestream")
        for probe in ("livenessProbe", "readinessProbe"):
            assert sidecar[probe]["httpGet"]["path"] in ("/livez", "/readyz")
        shutdown = float(sidecar["args"][sidecar["args"].index("--shutdown-timeout") + 1])
        assert pod["terminationGracePeriodSeconds"] >= shutdown + 10
        native = any(c["name"] == "litestream" and c.get("restartPolicy") == "Always"
                     for c in pod.get("initContainers", []))
        assert native == (path != "legacy-sidecar")
        if path == "legacy-sidecar":
            assert sidecar["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"
        tokens = [s["serviceAccountToken"] for v in pod["volumes"] if "projected" in v
                  for s in v["projected"]["sources"] if "serviceAccountToken" in s]
        assert len(tokens) == 1 and tokens[0]["expirationSeconds"] >= 600


def test_token_audience_equals_minio_client_id() -> None:
    minio = {d["metadata"]["name"]: d for d in kustomize("minio")}["minio-openid"]["data"]
    client_id = minio["MINIO_IDENTITY_OPENID_CLIENT_ID_KUBERNETES"]
    for path in WORKLOAD_BUILDS:
        for w in workloads(kustomize(path)):
            for v in w["spec"]["template"]["spec"]["volumes"]:
                for s in v.get("projected", {}).get("sources", []):
                    if "serviceAccountToken" in s:
                        assert s["serviceAccountToken"]["audience"] == client_id
    policy = json.loads((MANIFESTS / "minio" / "litestream-apps-policy.json").read_text())
    assert minio["MINIO_IDENTITY_OPENID_ROLE_POLICY_KUBERNETES"] == "litestream-apps"
    assert all("${jwt:sub}" in json.dumps(st) for st in policy["Statement"][1:])


def resolve_env(container: dict, configmaps: dict[str, dict], pod: dict, ns: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for src in container.get("envFrom", []):
        env.update(configmaps[src["configMapRef"]["name"]]["data"])
    fields = {"metadata.name": "app-0", "metadata.namespace": ns,
              "spec.serviceAccountName": pod.get("serviceAccountName", "default")}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            env[item["name"]] = fields[item["valueFrom"]["fieldRef"]["fieldPath"]]
    return env


@pytest.mark.parametrize("path", WORKLOAD_BUILDS)
def test_rendered_args_and_env_are_accepted_by_the_supervisor(tmp_path: Path, path: str) -> None:
    docs = kustomize(path)
    configmaps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    for w in workloads(docs):
        ns = w["metadata"].get("namespace", "default")
        pod = w["spec"]["template"]["spec"]
        for c in ours(pod):
            env = resolve_env(c, configmaps, pod, ns)
            config = tmp_path / f"{c['name']}.yml"
            config.write_text(configmaps["litestream-config"]["data"]["litestream.yml"])
            run_env = {"PATH": os.environ["PATH"], **env, "LITESTREAM_SUPERVISOR_CONFIG": str(config)}
            out = subprocess.run([sys.executable, "-m", "supervisor", *c["args"], "--dry-run"], env=run_env,
                                 capture_output=True, text=True, timeout=60, check=False)
            assert out.returncode == 0, f"{path} {c['name']}: {out.stderr}"
            resolved = json.loads(out.stdout)
            (db,) = resolved["databases"]
            assert db["path"] == env["DB_PATH"]
            assert db["path_in_bucket"] == f"system:serviceaccount:{ns}:{pod['serviceAccountName']}/db"
            # exactly the ARN MinIO derives for the audience the token carries
            assert resolved["role_arn"] == "arn:minio:iam:::role/oxnUw3DAuQF1uggjXGxI2AmW8IA"
            assert resolved["sts_endpoint"] == env["AWS_ENDPOINT_URL_STS"]


def test_component_patches_are_generated_from_the_template() -> None:
    out = subprocess.run([sys.executable, str(MANIFESTS / "generate.py"), "--check"], capture_output=True,
                         text=True, check=False)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize(("variant", "ca_dir"), [("minio-helm", "/etc/minio/certs/CAs"),
                                                 ("minio-root", "/root/.minio/certs/CAs")])
def test_minio_variants_patch_minio_and_keep_its_own_settings(variant: str, ca_dir: str) -> None:
    docs = kustomize(WORKLOADS / variant)
    (minio,) = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")]
    original = yaml.safe_load((WORKLOADS / variant / "minio.yaml").read_text())
    pod, before = minio["spec"]["template"]["spec"], original["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert {"configMapRef": {"name": "minio-openid"}} in c["envFrom"]
    assert {"name": "litestream-cluster-ca", "mountPath": ca_dir, "readOnly": True} in c["volumeMounts"]
    assert all(m in c["volumeMounts"] for m in before["containers"][0]["volumeMounts"])  # the app's own stay
    assert pod.get("securityContext") == before.get("securityContext")
    settings = next(d for d in docs if d["metadata"]["name"] == "minio-openid")["data"]
    assert all(k.endswith("_KUBERNETES") for k in settings if k.startswith("MINIO_IDENTITY_OPENID_"))
