"""The Component sets the workload exactly (issue 25) and gives each app its own settings (issue 28,
item 11), rendered by the real kustomize (`kubectl kustomize`, kustomize v5.5).

kustomize facts encoded here (verified with v5.5.0, the version `kubectl` ships here):
- a replacement's source must select exactly one object: none fails the build ("nothing
  selected"), two fail it ("multiple matches");
- a Component's replacements run where it is included, before that kustomization's (and any
  overlay's) namePrefix / nameSuffix: only a nameReference makes the value follow the rename;
- a generated ConfigMap's hash covers its data, so two apps with identical settings render one
  ConfigMap name, which either app's prune (kubectl apply --prune, Argo CD, Flux) then deletes
  while the other still uses it.
"""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from supervisor.core import settings
from supervisor.core import workload as workloads
from tests.unit.test_admission_workload import ALPHABET, MAX_BASE, deployment_name, random_string
from tests.unit.test_manifests import MANIFESTS, USER_APPS, WORKLOAD_BUILDS, WORKLOADS, kustomize, ours, resolve_env

COMPONENT = MANIFESTS / "components" / "litestream"
WORKLOAD_NAME = MANIFESTS / "components" / "litestream-workload-name"


def app_dir(root: Path, name: str, *, kind: str = "Deployment", extra: str = "", components: tuple[Path, ...] =
            (COMPONENT, WORKLOAD_NAME), settings_data: dict[str, str] | None = None, ns: str = "shop") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    workload: dict[str, Any] = {
        "apiVersion": "apps/v1", "kind": kind,
        "metadata": {"name": name, "labels": {"litestream-supervisor.io/enabled": "true"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}}, "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {"serviceAccountName": "app", "terminationGracePeriodSeconds": 60,
                     "securityContext": {"runAsUser": 1000, "runAsGroup": 1000},
                     "containers": [{"name": "app", "image": "app:1",
                                     "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                     "volumes": [{"name": "data", "emptyDir": {}}]}}}}
    if kind == "StatefulSet":
        workload["spec"]["serviceName"] = name
    (root / "app.yaml").write_text(yaml.safe_dump(workload))
    patch = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "litestream-supervisor-settings"},
             "data": settings_data or {"LITESTREAM_SUPERVISOR_DB_NAME": "app.db"}}
    (root / "kustomization.yaml").write_text(yaml.safe_dump({
        "namespace": ns, "resources": ["app.yaml"], "components": [os.path.relpath(c, root) for c in components],
        "patches": [{"patch": yaml.safe_dump(patch)}]}) + extra)
    return root


def pod_names(w: dict[str, Any], rng: random.Random, n: int = 3) -> list[tuple[str, str | None]]:
    """(pod name, pod-template-hash) of n replacement pods, as the controllers name them."""
    name = w["metadata"]["name"]
    if w["kind"] == "StatefulSet":
        return [(f"{name}-0", None)] * n
    template_hash = random_string(rng, 10)
    base = f"{name}-{template_hash}-"[:MAX_BASE]
    return [(base + random_string(rng, 5), template_hash) for _ in range(n)]


def replica_paths(docs: list[dict[str, Any]], rng: random.Random) -> dict[str, set[str]]:
    """workload -> the default replica paths its replacement pods' containers resolve (as the runtime does)."""
    configmaps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    out: dict[str, set[str]] = {}
    for w in (d for d in docs if d["kind"] in ("Deployment", "StatefulSet")):
        pod = w["spec"]["template"]["spec"]
        ns = w["metadata"].get("namespace", "default")
        for pod_name, template_hash in pod_names(w, rng):
            for c in ours(pod):
                env = resolve_env(c, configmaps, pod, ns, pod_name, template_hash)
                db = Path(env["LITESTREAM_SUPERVISOR_DB"])
                path = workloads.default_replica_path(env, db, env.get("LITESTREAM_SUPERVISOR_WORKLOAD") or None)
                out.setdefault(w["metadata"]["name"], set()).add(path)
    return out


@pytest.mark.parametrize("path", [*WORKLOAD_BUILDS, *(WORKLOADS / "apps" / a for a in USER_APPS)])
def test_every_rendered_workloads_replacement_pods_share_one_replica(path: str | Path) -> None:
    docs = kustomize(path)
    for workload, paths in replica_paths(docs, random.Random(str(path))).items():
        assert len(paths) == 1, f"{workload}: {paths}"
        (replica,) = paths
        kind = next(d["kind"] for d in docs if d["metadata"]["name"] == workload
                    and d["kind"] in ("Deployment", "StatefulSet"))
        expected = workload if kind == "Deployment" else f"{workload}-0"
        assert replica.split("/")[1] == expected


@pytest.mark.parametrize("length", [20, 47, 52, 63])
def test_a_long_deployment_name_through_prefix_and_suffix_overlays(tmp_path: Path, length: int) -> None:
    """The value is the name the Deployment is created with, after namePrefix/nameSuffix at the app's
    level and in an overlay above it; long enough names lose part of the hash from the pod names."""
    name = deployment_name(random.Random(length), length - len("a-") - len("-b") - len("c-"))
    app_dir(tmp_path / "app", name, extra="namePrefix: a-\nnameSuffix: -b\n")
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text("resources: [../app]\nnamePrefix: c-\n")
    docs = kustomize(overlay)
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    final = deployment["metadata"]["name"]
    assert final == f"c-a-{name}-b" and len(final) == length
    (cm,) = [d for d in docs if d["kind"] == "ConfigMap"]
    assert cm["data"]["LITESTREAM_SUPERVISOR_WORKLOAD"] == final
    assert replica_paths(docs, random.Random(length)) == {final: {f"system:serviceaccount:shop:app/{final}/app.db"}}


def test_without_the_workload_name_component_a_long_deployment_has_no_exact_workload(tmp_path: Path) -> None:
    """What the second Component fixes: the runtime cannot derive a 52-character Deployment's name
    from its pods' names (the cut hash), and says what to set instead of guessing."""
    name = deployment_name(random.Random(1), 52)
    docs = kustomize(app_dir(tmp_path / "app", name, components=(COMPONENT,)))
    with pytest.raises(settings.ConfigError, match="LITESTREAM_SUPERVISOR_WORKLOAD: not set"):
        replica_paths(docs, random.Random(1))


def test_a_statefulsets_pods_keep_their_own_names(tmp_path: Path) -> None:
    docs = kustomize(app_dir(tmp_path / "app", "ledger", kind="StatefulSet", extra="namePrefix: x-\n"))
    assert replica_paths(docs, random.Random(2)) == {"x-ledger": {"system:serviceaccount:shop:app/x-ledger-0/app.db"}}


@pytest.mark.parametrize(("resources", "message"), [
    (["app.yaml", "second.yaml"], "multiple matches"),
    ([], "nothing selected"),
])
def test_the_workload_name_component_fails_loudly_unless_there_is_exactly_one_workload(
        tmp_path: Path, resources: list[str], message: str) -> None:
    root = app_dir(tmp_path / "app", "orders")
    second = yaml.safe_load((root / "app.yaml").read_text())
    second["metadata"]["name"] = "users"
    (root / "second.yaml").write_text(yaml.safe_dump(second))
    k = yaml.safe_load((root / "kustomization.yaml").read_text())
    (root / "kustomization.yaml").write_text(yaml.safe_dump({**k, "resources": resources}))
    out = subprocess.run(["kubectl", "kustomize", str(root)], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode != 0 and message in out.stderr


@pytest.mark.parametrize("with_component", [True, False])
def test_two_apps_with_identical_settings_in_one_namespace_get_their_own_configmaps(
        tmp_path: Path, with_component: bool) -> None:
    """Item 11: the apps' kustomizations render distinct settings ConfigMaps (so neither app's prune
    removes what the other uses); without the second Component they collide, which is the bug."""
    components = (COMPONENT, WORKLOAD_NAME) if with_component else (COMPONENT,)
    same = {"LITESTREAM_SUPERVISOR_DB_NAME": "app.db", "LITESTREAM_SUPERVISOR_BUCKET": "shared"}
    names = []
    for app in ("orders", "users"):
        docs = kustomize(app_dir(tmp_path / app, app, components=components, settings_data=same))
        (cm,) = [d for d in docs if d["kind"] == "ConfigMap"]
        names.append((cm["metadata"]["namespace"], cm["metadata"]["name"]))
    assert (names[0] != names[1]) == with_component


def test_the_randomness_alphabet_is_kubernetes() -> None:
    assert len(ALPHABET) == 27 and not set("aeiou013") & set(ALPHABET)


def test_the_readmes_patch_for_several_deployments_in_one_kustomization(tmp_path: Path) -> None:
    """The README's snippet, as written there, sets each Deployment's name on both injected containers."""
    readme = (MANIFESTS.parent / "README.md").read_text()
    block = readme.split("set the name on each Deployment yourself:", 1)[1].split("```yaml", 1)[1].split("```", 1)[0]
    snippet = yaml.safe_load(block)
    root = app_dir(tmp_path / "apps", "orders", components=(COMPONENT,))
    second = yaml.safe_load((root / "app.yaml").read_text())
    second["metadata"]["name"] = second["spec"]["template"]["metadata"]["labels"]["app"] = "users"
    second["spec"]["selector"]["matchLabels"]["app"] = "users"
    (root / "second.yaml").write_text(yaml.safe_dump(second))
    k = yaml.safe_load((root / "kustomization.yaml").read_text())
    users = [{**p, "target": {**p["target"], "name": "users"}, "patch": p["patch"].replace("orders", "users")}
             for p in snippet["patches"]]
    k.update(resources=["app.yaml", "second.yaml"], patches=k["patches"] + snippet["patches"] + users)
    (root / "kustomization.yaml").write_text(yaml.safe_dump(k))
    docs = kustomize(root)
    assert replica_paths(docs, random.Random(3)) == {
        name: {f"system:serviceaccount:shop:app/{name}/app.db"} for name in ("orders", "users")}
