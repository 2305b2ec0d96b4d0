"""Every kustomization builds, validates strictly (1.29 and newest), is hardened, and its
containers' args and env are accepted by litestream-supervisor itself."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
WORKLOADS = ROOT / "tests" / "workloads"
BUILDS = ["base", "legacy-sidecar", "examples/app-base", "examples/app-component", "examples/app-webhook", "minio",
          "webhook", "policy", "ceph-rgw", "monitoring",
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
        if path in ("base", "legacy-sidecar", "examples/app-base"):  # our own app template
            assert pod["automountServiceAccountToken"] is False
            assert pod["securityContext"]["runAsNonRoot"] is True
            assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        for c in ours(pod):  # what we inject is hardened on the container, never via the pod
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"] and sc["runAsNonRoot"] is True
            assert sc["seccompProfile"]["type"] == "RuntimeDefault"
            # bench: ~46 MB supervisor + ~35 MB Litestream idle
            assert c["resources"]["requests"]["memory"] == "128Mi" and c["resources"]["limits"]["memory"]
        names = [c["name"] for c in ours(pod)]
        assert names.count("litestream-restore") == 1 and names.count("litestream") == 1
        sidecar = next(c for c in ours(pod) if c["name"] == "litestream")
        for probe in ("livenessProbe", "readinessProbe"):
            assert sidecar[probe]["httpGet"]["path"].split("?")[0] in ("/livez", "/readyz")
        shutdown = float(sidecar["args"][sidecar["args"].index("--shutdown-timeout") + 1])
        assert pod.get("terminationGracePeriodSeconds", 30) >= shutdown + 10
        native = any(c["name"] == "litestream" and c.get("restartPolicy") == "Always"
                     for c in pod.get("initContainers", []))
        assert native == (path != "legacy-sidecar")
        if path == "legacy-sidecar":
            assert sidecar["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"
        else:
            assert sidecar["startupProbe"]["httpGet"]["path"] == "/readyz"  # startup gated on every check
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


def resolve_env(container: dict, configmaps: dict[str, dict], pod: dict, ns: str, pod_name: str,
                template_hash: str | None) -> dict[str, str]:
    """The container's environment as the kubelet builds it (envFrom, then env with $(VAR) expansion)."""
    import re
    env: dict[str, str] = {}
    for src in container.get("envFrom", []):
        env.update(configmaps[src["configMapRef"]["name"]]["data"])
    fields = {"metadata.name": pod_name, "metadata.namespace": ns, "metadata.uid": "0b5e-uid",
              "spec.serviceAccountName": pod.get("serviceAccountName", "default"),
              "metadata.labels['pod-template-hash']": template_hash or ""}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m[1], m[0]), item["value"])
        elif "fieldRef" in item["valueFrom"]:
            env[item["name"]] = fields[item["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            ref = item["valueFrom"]["configMapKeyRef"]
            env[item["name"]] = configmaps[ref["name"]]["data"][ref["key"]]
    return env


@pytest.mark.parametrize("path", WORKLOAD_BUILDS)
def test_rendered_args_and_env_are_accepted_by_the_supervisor(path: str) -> None:
    docs = kustomize(path)
    configmaps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    for w in workloads(docs):
        ns = w["metadata"].get("namespace", "default")
        pod = w["spec"]["template"]["spec"]
        deployment = w["kind"] == "Deployment"
        pod_name = f"{w['metadata']['name']}-7d4b9c8f6d-x2x9q" if deployment else f"{w['metadata']['name']}-0"
        for c in ours(pod):
            env = resolve_env(c, configmaps, pod, ns, pod_name, "7d4b9c8f6d" if deployment else None)
            run_env = {"PATH": os.environ["PATH"], **env}
            out = subprocess.run([sys.executable, "-m", "supervisor", *c["args"], "--dry-run"], env=run_env,
                                 capture_output=True, text=True, timeout=60, check=False)
            assert out.returncode == 0, f"{path} {c['name']}: {out.stderr}"
            resolved = json.loads(out.stdout)
            (db,) = resolved["databases"]
            db_name = env["LITESTREAM_SUPERVISOR_DB_NAME"]
            mount = next(m for m in c["volumeMounts"] if m["name"] == "data")["mountPath"]
            assert db["path"] == f"{mount}/{db_name}"
            workload = w["metadata"]["name"] if deployment else pod_name
            assert db["path_in_bucket"] == \
                f"system:serviceaccount:{ns}:{pod['serviceAccountName']}/{workload}/{db_name}"
            # exactly the ARN MinIO derives for the audience the token carries
            assert resolved["role_arn"] == "arn:minio:iam:::role/oxnUw3DAuQF1uggjXGxI2AmW8IA"
            assert resolved["sts_endpoint"] == env["AWS_ENDPOINT_URL_STS"]
            # the app reads the same database through its own mount of the same volume
            for app in pod["containers"]:
                if app in ours(pod):
                    continue
                app_env = resolve_env(app, configmaps, pod, ns, pod_name, None)
                app_mounts = {m["name"]: m["mountPath"] for m in app.get("volumeMounts", [])}
                assert f"{app_mounts['data']}/{db_name}" in app_env.values()


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


def test_component_patches_are_generated_from_the_template() -> None:
    out = subprocess.run([sys.executable, str(MANIFESTS / "generate.py"), "--check"], capture_output=True,
                         text=True, check=False)
    assert out.returncode == 0, out.stderr


# --- the Component on apps that are not ours (issue 13) ---

USER_APPS = sorted(p.name for p in (WORKLOADS / "apps").iterdir() if (p / "kustomization.yaml").exists())


def user_inputs(app: str) -> dict[tuple[str, str], dict]:
    docs = [d for f in sorted((WORKLOADS / "apps" / app).glob("*.yaml")) if f.name != "kustomization.yaml"
            for d in yaml.safe_load_all(f.read_text()) if d]
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


@pytest.mark.parametrize("app", USER_APPS)
def test_component_on_a_users_app_passes_what_the_api_server_enforces(app: str) -> None:
    from tests.k8s_rules import workload_problems
    docs = kustomize(WORKLOADS / "apps" / app)
    problems = []
    for w in workloads(docs):
        ns = w["metadata"].get("namespace")
        same_namespace = {d["metadata"]["name"]: d for d in docs
                          if d["kind"] == "ConfigMap" and d["metadata"].get("namespace") == ns}
        problems += workload_problems(w, same_namespace)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("app", USER_APPS)
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_component_on_a_users_app_validates_strictly(tmp_path: Path, app: str, version: str | None) -> None:
    test_builds_and_validates_strictly(tmp_path, WORKLOADS / "apps" / app, version)  # type: ignore[arg-type]


@pytest.mark.parametrize("app", USER_APPS)
def test_component_changes_nothing_but_adds(app: str) -> None:
    """The render differs from the app as written only by additions, plus strategy: Recreate."""
    from tests.k8s_rules import additions_only
    inputs = user_inputs(app)
    for w in workloads(kustomize(WORKLOADS / "apps" / app)):
        before = inputs[(w["kind"], w["metadata"]["name"])]
        if w["kind"] == "Deployment":
            assert w["spec"]["strategy"] == {"type": "Recreate", "rollingUpdate": None}
            before = {**before, "spec": {k: v for k, v in before["spec"].items() if k != "strategy"}}
        # a reference the app made to the settings now names its hashed version: that is kustomize
        unhashed = re.sub(r"litestream-supervisor-settings-[a-z0-9]{10}", "litestream-supervisor-settings",
                          yaml.safe_dump(w))
        rendered = yaml.safe_load(unhashed)
        problems = additions_only(before, rendered)
        assert not problems, "\n".join(problems)
        added = [c["name"] for c in w["spec"]["template"]["spec"]["initContainers"]
                 if c["name"] not in {i["name"] for i in before["spec"]["template"]["spec"].get("initContainers", [])}]
        assert added == ["litestream-restore", "litestream"]  # first: the app's migration sees the restored db
        new_volumes = {v["name"] for v in w["spec"]["template"]["spec"]["volumes"]} - \
            {v["name"] for v in before["spec"]["template"]["spec"].get("volumes", [])}
        assert all(name.startswith("litestream-") for name in new_volumes)


def test_two_apps_in_one_namespace_never_share_settings_or_a_replica() -> None:
    """Each app's settings ConfigMap is hashed (no overwrite when both are applied to one
    namespace); each app's replica prefix carries its own workload name."""
    renders = {app: kustomize(WORKLOADS / "apps" / app) for app in ("shop-orders", "shop-users")}
    configmaps: dict[str, dict] = {}
    for docs in renders.values():
        for d in docs:
            if d["kind"] == "ConfigMap":
                name = d["metadata"]["name"]
                assert name not in configmaps or configmaps[name]["data"] == d["data"], f"{name} overwritten"
                configmaps[name] = d
    assert len([n for n in configmaps if n.startswith("litestream-supervisor-settings-")]) == 2


# --- the admission webhook's manifests (issue 14) ---

def test_webhook_configuration_is_scoped_and_fails_closed() -> None:
    docs = kustomize("webhook")
    (config,) = [d for d in docs if d["kind"] == "MutatingWebhookConfiguration"]
    (hook,) = config["webhooks"]
    assert hook["failurePolicy"] == "Fail" and hook["sideEffects"] == "None" and hook["timeoutSeconds"] == 5
    assert hook["reinvocationPolicy"] == "Never" and hook["admissionReviewVersions"] == ["v1"]
    assert hook["rules"] == [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                              "resources": ["pods"], "scope": "Namespaced"}]
    assert hook["objectSelector"] == {"matchLabels": {"litestream-supervisor.io/inject": "true"}}
    excluded = hook["namespaceSelector"]["matchExpressions"]
    assert all(e["operator"] == "NotIn" and e["key"] == "kubernetes.io/metadata.name" for e in excluded)
    assert {v for e in excluded for v in e["values"]} == {
        "kube-system", "kube-public", "kube-node-lease", "litestream-system"}
    assert hook["clientConfig"]["service"]["path"] == "/mutate"
    assert config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == \
        "litestream-system/litestream-supervisor-webhook-ca"
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    assert deployment["spec"]["replicas"] == 2
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    configmaps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    from tests.k8s_rules import workload_problems
    assert workload_problems(deployment, configmaps) == []


def _policy() -> dict:
    (policy,) = [d for d in kustomize("policy") if d["kind"] == "ValidatingAdmissionPolicy"]
    return policy["spec"]


@pytest.mark.parametrize(("workload", "allowed"), [
    ({"kind": "Deployment", "spec": {"replicas": 1, "strategy": {"type": "Recreate"}}}, True),
    ({"kind": "Deployment", "spec": {"replicas": 1, "strategy": {"type": "RollingUpdate"}}}, False),
    ({"kind": "Deployment", "spec": {"replicas": 1}}, False),  # the default strategy is RollingUpdate
    ({"kind": "Deployment", "spec": {"replicas": 2, "strategy": {"type": "Recreate"}}}, False),
    ({"kind": "StatefulSet", "spec": {"replicas": 1}}, True),
    ({"kind": "StatefulSet", "spec": {}}, True),
    ({"kind": "StatefulSet", "spec": {"replicas": 3}}, True),  # each ordinal its own database
    ({"kind": "ReplicaSet", "spec": {"replicas": 2}}, False),
])
def test_validating_admission_policy_cel(workload: dict, allowed: bool) -> None:
    """The policy's CEL evaluated as the API server does (cel-python), on opted-in and other workloads."""
    import celpy
    spec = _policy()
    env = celpy.Environment()

    def run(expression: str, obj: dict) -> bool:
        return bool(env.program(env.compile(expression)).evaluate({"object": celpy.json_to_cel(obj)}))

    opted_in = {**workload, "spec": {**workload["spec"], "template": {"metadata": {"labels": {
        "litestream-supervisor.io/inject": "true"}}}}}
    other = {**workload, "spec": {**workload["spec"], "template": {"metadata": {"labels": {"app": "x"}}}}}
    (condition,) = spec["matchConditions"]
    assert run(condition["expression"], opted_in) and not run(condition["expression"], other)
    assert all(run(v["expression"], opted_in) for v in spec["validations"]) == allowed


def test_without_cert_manager_overlay(tmp_path: Path) -> None:
    """generate.sh makes a CA and a serving certificate and an overlay with the Secret and caBundle;
    a rerun keeps the CA (caBundle unchanged) and issues a new serving certificate from it."""
    import base64
    out = tmp_path / "webhook"
    script = MANIFESTS / "webhook/without-cert-manager/generate.sh"

    def generate(**env: str) -> list[dict]:
        run = subprocess.run(["bash", str(script), str(out), "30"], capture_output=True, text=True, timeout=60,
                             check=False, env={**os.environ, **env})
        assert run.returncode == 0, run.stderr
        return kustomize(out)

    docs = generate()
    kinds = {d["kind"] for d in docs}
    assert "Certificate" not in kinds and "Issuer" not in kinds
    (config,) = [d for d in docs if d["kind"] == "MutatingWebhookConfiguration"]
    assert "cert-manager.io/inject-ca-from" not in (config["metadata"].get("annotations") or {})
    first_ca, first_leaf = (out / "ca.crt").read_bytes(), (out / "tls.crt").read_bytes()
    assert base64.b64decode(config["webhooks"][0]["clientConfig"]["caBundle"]) == first_ca
    (secret,) = [d for d in docs if d["kind"] == "Secret"]
    assert secret["metadata"]["name"] == "litestream-supervisor-webhook-tls"
    assert base64.b64decode(secret["data"]["tls.crt"]) == first_leaf
    assert all((out / key).stat().st_mode & 0o777 == 0o600 for key in ("ca.key", "tls.key"))
    # a rerun (rotation): same CA, same caBundle, a new serving certificate that verifies against it
    docs = generate()
    (config,) = [d for d in docs if d["kind"] == "MutatingWebhookConfiguration"]
    assert (out / "ca.crt").read_bytes() == first_ca and (out / "tls.crt").read_bytes() != first_leaf
    assert base64.b64decode(config["webhooks"][0]["clientConfig"]["caBundle"]) == first_ca
    for leaf in (out / "tls.crt", ):
        verify = subprocess.run(["openssl", "verify", "-CAfile", str(out / "ca.crt"), str(leaf)],
                                capture_output=True, text=True, check=False)
        assert verify.returncode == 0, verify.stdout + verify.stderr
    # another namespace: every reference follows, the certificate names it
    docs = generate(NAMESPACE="platform")
    assert "litestream-system" not in yaml.safe_dump_all(docs)
    san = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", str(out / "tls.crt")],
                         capture_output=True, text=True, check=True).stdout
    assert "litestream-supervisor-webhook.platform.svc" in san


def _overlay(tmp_path: Path, body: str) -> Path:
    root = tmp_path / "overlay"
    root.mkdir(exist_ok=True)
    (root / "kustomization.yaml").write_text(body.replace("WEBHOOK", os.path.relpath(MANIFESTS / "webhook", root)))
    return root


@pytest.mark.parametrize(("ha", "nodes", "completes", "fewest"), [
    (False, 1, True, 0),  # the default: a one-node drain completes (and takes the webhook down: one node)
    (False, 3, True, 1),
    (True, 1, False, 1),  # with the budget, a one-node drain never completes: hence optional
    (True, 2, True, 1),
    (True, 3, True, 1),
])
def test_webhook_disruption_budget_and_kubectl_drain(tmp_path: Path, ha: bool, nodes: int, completes: bool,
                                                     fewest: int) -> None:
    """Issue 28 item 5: the default install must not block `kubectl drain` on a one-node cluster
    (kubernetes/kubernetes#66811, #83307: a budget that needs a replacement pod Ready elsewhere blocks
    for ever); the optional high-availability Component keeps one pod up on larger clusters."""
    from tests.k8s_rules import drain
    path = _overlay(tmp_path, "resources: [WEBHOOK]\n" + ("components: [WEBHOOK/high-availability]\n" if ha else ""))
    docs = kustomize(path)
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    pdbs = [d["spec"] for d in docs if d["kind"] == "PodDisruptionBudget"]
    assert bool(pdbs) == ha and all(d["metadata"]["namespace"] == "litestream-system" for d in docs
                                    if d["kind"] == "PodDisruptionBudget")
    assert drain(deployment["spec"]["replicas"], nodes, pdbs) == (completes, fewest)


def test_webhook_grace_period_covers_its_drain() -> None:
    (deployment,) = [d for d in kustomize("webhook") if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    drain_seconds = float(c["args"][c["args"].index("--drain-seconds") + 1])
    probe = c["readinessProbe"]
    # readiness fails at SIGTERM; the drain outlasts a readiness period or two, the grace period the drain
    assert drain_seconds >= 2 * probe["periodSeconds"]
    assert pod["terminationGracePeriodSeconds"] >= drain_seconds + 10
