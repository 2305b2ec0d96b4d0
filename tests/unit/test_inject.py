"""The injection (issue 14): golden fixtures shaped like API-server requests, properties over
generated pods, refusals, and every patched pod checked as the API server would."""

from __future__ import annotations

import json
import os
import posixpath
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supervisor.admission.inject import STATUS, Defaults, Refused, inject
from supervisor.admission.mesh import MESH_CONTAINERS
from tests.k8s_rules import additions_only, pod_problems

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "admission"
GOLDEN = sorted(p.name.removesuffix(".pod.json") for p in FIXTURES.glob("*.pod.json"))
DEFAULTS = Defaults(image="registry.example.com/litestream-supervisor:0.1.0", bucket="litestream",
                    endpoint="http://minio.minio.svc:9000",
                    role_arn="arn:minio:iam:::role/oxnUw3DAuQF1uggjXGxI2AmW8IA", own_namespace="litestream-system")


def patched(pod: dict[str, Any]) -> dict[str, Any]:
    injection = inject(pod, DEFAULTS, pod["metadata"].get("namespace") or "shop")
    assert injection.patch and all(op["op"] == "add" for op in injection.patch)
    return jsonpatch.apply_patch(pod, injection.patch)


@pytest.mark.parametrize("name", GOLDEN)
def test_golden(name: str) -> None:
    """A stale golden file fails; UPDATE_GOLDEN=1 rewrites them (then review the diff)."""
    pod = json.loads((FIXTURES / f"{name}.pod.json").read_text())
    result = patched(pod)
    golden = FIXTURES / f"{name}.patched.json"
    text = json.dumps(result, indent=1, sort_keys=True) + "\n"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text)
    assert golden.exists(), f"{golden.name} missing: run with UPDATE_GOLDEN=1 and review it"
    assert golden.read_text() == text, f"{golden.name} is stale"


@pytest.mark.parametrize("name", GOLDEN)
def test_golden_pods_change_nothing_and_pass_the_api_servers_rules(name: str) -> None:
    pod = json.loads((FIXTURES / f"{name}.pod.json").read_text())
    result = patched(pod)
    assert additions_only(pod, result) == []
    assert pod_problems(result["spec"], configmaps={}) == []
    names = [c["name"] for c in result["spec"]["initContainers"]]
    ours = names.index("litestream-restore")
    assert names[ours + (1 if "litestream" in names else 0)] in ("litestream", names[ours])
    mesh = [i for i, n in enumerate(names) if n in MESH_CONTAINERS]
    assert all(i < ours for i in mesh)  # after mesh init containers and proxies
    apps = [i for i, n in enumerate(names) if n in ("migrate", "log-shipper")]
    assert all(i > ours for i in apps)  # before the app's own init containers
    # idempotent: a second admission adds nothing
    assert inject(result, DEFAULTS, "shop").patch == []


REFUSED = sorted(p.name.removesuffix(".pod.json") for p in (FIXTURES / "refused").glob("*.pod.json"))


@pytest.mark.parametrize("name", REFUSED)
def test_refused_fixtures_say_what_to_set(name: str) -> None:
    """Pods our containers could not run in (meshes in classic mode, probes a mesh refuses): refused
    with a message naming what to change (the lines of <name>.refusal.txt); the same pod with
    litestream-supervisor.io/mesh-ports-excluded: "true" is injected."""
    pod = json.loads((FIXTURES / "refused" / f"{name}.pod.json").read_text())
    with pytest.raises(Refused) as refused:
        inject(pod, DEFAULTS, "shop")
    for line in (FIXTURES / "refused" / f"{name}.refusal.txt").read_text().splitlines():
        assert line in str(refused.value), f"{line!r} not in {refused.value}"
    pod["metadata"]["annotations"]["litestream-supervisor.io/mesh-ports-excluded"] = "true"
    assert inject(pod, DEFAULTS, "shop").patch


def test_the_app_keeps_restartpolicy_and_startup_probes_it_wrote() -> None:
    pod = json.loads((FIXTURES / "istio-native-and-migration.pod.json").read_text())
    result = patched(pod)
    proxy = next(c for c in result["spec"]["initContainers"] if c["name"] == "istio-proxy")
    assert proxy["restartPolicy"] == "Always" and proxy["startupProbe"]


def test_injected_containers_take_the_apps_uid_when_only_the_container_sets_it() -> None:
    pod = json.loads((FIXTURES / "deployment-own-data-volume.pod.json").read_text())
    result = patched(pod)
    for c in result["spec"]["initContainers"]:
        assert c["securityContext"]["runAsUser"] == 1000 and c["securityContext"]["runAsGroup"] == 1000
    pod_level = json.loads((FIXTURES / "existing-native-sidecar.pod.json").read_text())
    for c in patched(pod_level)["spec"]["initContainers"]:
        if c["name"].startswith("litestream"):
            assert "runAsUser" not in c["securityContext"]  # inherited from the pod's runAsUser


def test_a_pod_without_a_volume_at_the_db_directory_gets_one_mounted_in_the_app_too() -> None:
    pod = json.loads((FIXTURES / "no-data-volume.pod.json").read_text())
    result = patched(pod)
    assert {"name": "litestream-data", "emptyDir": {}} in result["spec"]["volumes"]
    web = result["spec"]["containers"][0]
    assert {"name": "litestream-data", "mountPath": "/var/lib/web"} in web["volumeMounts"]


@pytest.mark.parametrize(("change", "message"), [
    (lambda p: p["metadata"]["annotations"].pop("litestream-supervisor.io/db"), "litestream-supervisor.io/db"),
    (lambda p: p["metadata"].__setitem__("namespace", "kube-system"), "system namespace"),
    (lambda p: p["metadata"].__setitem__("namespace", "litestream-system"), "system namespace"),
    (lambda p: p["metadata"]["annotations"].__setitem__("litestream-supervisor.io/token-expiration", "60"), "600"),
    (lambda p: p["metadata"]["annotations"].__setitem__("litestream-supervisor.io/sidecar", "both"), "sidecar"),
])
def test_refusals_say_what_to_change(change: Any, message: str) -> None:
    pod = json.loads((FIXTURES / "legacy-sidecar.pod.json").read_text())
    change(pod)
    with pytest.raises(Refused, match=message):
        inject(pod, DEFAULTS, pod["metadata"].get("namespace"))


def test_statefulset_ordinal_1_on_a_fixed_prefix_is_refused() -> None:
    pod = json.loads((FIXTURES / "legacy-sidecar.pod.json").read_text())
    pod["metadata"].update(name="db-1", ownerReferences=[{"kind": "StatefulSet", "name": "db", "controller": True}])
    pod["metadata"]["annotations"]["litestream-supervisor.io/replica-path"] = "shared/app.db"
    with pytest.raises(Refused, match="ordinal"):
        inject(pod, DEFAULTS, "shop")
    pod["metadata"]["annotations"].pop("litestream-supervisor.io/replica-path")
    assert inject(pod, DEFAULTS, "shop").patch  # its own prefix (from its name): fine


def test_not_opted_in_is_untouched() -> None:
    pod = json.loads((FIXTURES / "legacy-sidecar.pod.json").read_text())
    pod["metadata"]["labels"].pop("litestream-supervisor.io/inject")
    assert inject(pod, DEFAULTS, "shop").patch == []


# --- properties over generated pods ---

NAME = st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True)


@st.composite
def pods(draw: Any) -> dict[str, Any]:
    volume_names = draw(st.lists(NAME, max_size=4, unique=True))
    volumes = [{"name": n, "emptyDir": {}} for n in volume_names]
    def container(name: str) -> dict[str, Any]:
        mounts = [{"name": v, "mountPath": f"/mnt/{v}"} for v in draw(st.lists(st.sampled_from(volume_names),
                                                                              unique=True))] if volume_names else []
        for m in mounts:  # a subdirectory of the volume (issue 28: it is still the data volume)
            if draw(st.booleans()):
                m["subPath"] = draw(st.sampled_from(["db", "app/data"]))
        c: dict[str, Any] = {"name": name, "image": "app"}
        if mounts or draw(st.booleans()):
            c["volumeMounts"] = mounts
        if draw(st.booleans()):
            c["securityContext"] = {"runAsUser": draw(st.integers(1, 65000))}
        return c
    names = draw(st.lists(NAME, min_size=1, max_size=5, unique=True))
    split = draw(st.integers(0, len(names) - 1))
    spec: dict[str, Any] = {"containers": [container(n) for n in names[split:]] or [container("app")]}
    if split:
        spec["initContainers"] = [container(n) for n in names[:split]]
    if volumes or draw(st.booleans()):
        spec["volumes"] = volumes
    db_dir = draw(st.sampled_from([f"/mnt/{v}" for v in volume_names] + ["/data", "/var/lib/app"]))
    meta: dict[str, Any] = {"labels": {"litestream-supervisor.io/inject": "true"},
                            "annotations": {"litestream-supervisor.io/db": f"{db_dir}/app.db"}}
    if draw(st.booleans()):  # the image has nothing at a top-level db directory: an emptyDir is fine there
        meta["annotations"]["litestream-supervisor.io/data-volume-ok"] = "true"
    if draw(st.booleans()):  # a Deployment's pod: the workload comes from its owner
        meta["generateName"] = "app-7d4b9c8f6d-"
        meta["labels"]["pod-template-hash"] = "7d4b9c8f6d"
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "app-7d4b9c8f6d",
                                    "uid": "u", "controller": True}]
    else:
        meta["name"] = "app"
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def refusal_expected(pod: dict[str, Any]) -> str | None:
    """Why a generated pod must be refused, computed apart from podchecks: every container seeing
    something at the db's directory (its deepest mount there) must see the same volume and directory
    inside it, and an app container must be one of them (volumes are per container)."""
    spec = pod["spec"]
    db_dir = posixpath.dirname(pod["metadata"]["annotations"]["litestream-supervisor.io/db"])
    views: dict[str, tuple[str, str]] = {}
    for c in spec.get("initContainers", []) + spec["containers"]:
        covering = [m for m in c.get("volumeMounts", [])
                    if db_dir == m["mountPath"] or db_dir.startswith(m["mountPath"] + "/")]
        if covering:
            m = max(covering, key=lambda m: len(m["mountPath"]))
            inside = posixpath.join(m.get("subPath", ""), posixpath.relpath(db_dir, m["mountPath"]))
            views[c["name"]] = (m["name"], posixpath.normpath(inside))
    if len(set(views.values())) > 1:
        return f"containers see different files at {db_dir}: {views}"
    if views and not any(c["name"] in views for c in spec["containers"]):
        return f"only init containers mount {db_dir}: {views}"
    ok = pod["metadata"]["annotations"].get("litestream-supervisor.io/data-volume-ok") == "true"
    if not views and db_dir.count("/") < 2 and not ok:  # an emptyDir at a top-level directory
        return f"an emptyDir at {db_dir}"
    return None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pods())
def test_properties_of_every_injection(pod: dict[str, Any]) -> None:
    expected = refusal_expected(pod)
    try:
        injection = inject(pod, DEFAULTS, "shop")
    except Refused as e:
        assert expected, f"refused: {e}"
        return
    assert not expected, f"not refused, expected: {expected}"
    assert all(op["op"] == "add" for op in injection.patch)
    result = jsonpatch.apply_patch(pod, injection.patch)  # the patch applies
    assert additions_only(pod, result) == []  # every existing field unchanged
    assert pod_problems(result["spec"], configmaps={}) == []  # unique names, mount paths, one source...
    assert STATUS in result["metadata"]["annotations"]
    assert inject(result, DEFAULTS, "shop").patch == []  # re-injection is a no-op


@pytest.mark.parametrize("version", ["1.29.0", None])
def test_patched_pods_validate_strictly(tmp_path: Path, version: str | None) -> None:
    docs = [patched(json.loads((FIXTURES / f"{name}.pod.json").read_text())) for name in GOLDEN]
    for d in docs:
        d["metadata"].pop("managedFields", None)  # server-side bookkeeping, not part of a request body schema
        d["metadata"].setdefault("name", "web-abcde")
    rendered = tmp_path / "pods.yaml"
    rendered.write_text(yaml.safe_dump_all(docs))
    cmd = [str(Path(sys.executable).parent / "kubernetes-validate"), "--strict", "--quiet", str(rendered)]
    if version:
        cmd[1:1] = ["-k", version]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_parity_with_the_component() -> None:
    """The webhook's injection of the example app equals the Component's rendering of it: the same
    containers, probes, mounts, volumes, and the same resolved settings (`--dry-run`)."""
    from tests.unit.test_manifests import kustomize, resolve_env

    docs = kustomize("examples/app-component")
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    configmaps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    settings_cm = next(v["data"] for k, v in configmaps.items() if k.startswith("litestream-supervisor-settings"))
    original = yaml.safe_load((Path(__file__).resolve().parents[2] / "manifests/examples/app-component/"
                               "deployment.yaml").read_text())
    template = original["spec"]["template"]
    template["metadata"]["labels"]["litestream-supervisor.io/inject"] = "true"
    template["metadata"]["annotations"] = {"litestream-supervisor.io/db": "/var/lib/wiki/wiki.db"}
    defaults = Defaults(image="registry.example.com/litestream-supervisor:0.1.0",
                        bucket=settings_cm["LITESTREAM_SUPERVISOR_BUCKET"],
                        endpoint=settings_cm["AWS_ENDPOINT_URL_S3"], role_arn=settings_cm["AWS_ROLE_ARN"],
                        region=settings_cm["AWS_REGION"])
    injected = jsonpatch.apply_patch(template, inject(template, defaults, "wiki", template_workload="wiki").patch)
    rendered = deployment["spec"]["template"]

    def ours(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {c["name"]: c for c in pod["spec"]["initContainers"] + pod["spec"]["containers"]
                if c["name"].startswith("litestream")}

    a, b = ours(rendered), ours(injected)
    assert a.keys() == b.keys()
    for name in a:
        for key in ("image", "args", "ports", "restartPolicy", "startupProbe", "livenessProbe", "readinessProbe",
                    "volumeMounts", "securityContext", "resources"):
            assert a[name].get(key) == b[name].get(key), f"{name}.{key}"
        resolved = []
        for pod, c in ((rendered, a[name]), (injected, b[name])):
            env = resolve_env(c, configmaps, pod["spec"], "wiki", "wiki-7d4b9c8f6d-x2x9q", "7d4b9c8f6d")
            out = subprocess.run([sys.executable, "-m", "supervisor", *c["args"], "--dry-run"],
                                 env={"PATH": os.environ["PATH"], **env}, capture_output=True, text=True, timeout=60,
                                 check=False)
            assert out.returncode == 0, out.stderr
            resolved.append(json.loads(out.stdout))
        assert resolved[0] == resolved[1]
    ours_volumes = [{v["name"]: v for v in pod["spec"]["volumes"] if v["name"].startswith("litestream")}
                    for pod in (rendered, injected)]
    assert ours_volumes[0] == ours_volumes[1]
