"""What a real cluster does that a render does not (issue 28, items 1-4), at admission.

Sources:
- meshes: Istio "Install with the Istio CNI plugin" (application init containers: traffic
  redirection is in place before they run, the proxy is not; exclusion annotations or uid 1337),
  istio/istio.io#15117; Istio "Health Checking of Istio Services" (the kubelet has no mesh
  certificate: plain HTTP probes fail under mutual TLS unless rewritten, and only containers present
  when Istio's injector runs are rewritten); Linkerd "Proxy Configuration" reference
  (config.linkerd.io/skip-{inbound,outbound}-ports, config.beta.linkerd.io/proxy-enable-native-sidecar),
  linkerd/linkerd2#4792 (init containers behind the CNI plugin's rules have no network);
- mounts: API server ValidateVolumeMounts (one mountPath per container; subPath relative, not with
  subPathExpr); subPathExpr expands the container's own environment;
- uid 0: the kubelet refuses a container with runAsNonRoot whose user is 0;
- warnings: AdmissionReview v1 `response.warnings`, shown to the requesting client only.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonpatch
import pytest

from supervisor.admission.documents import inject_documents
from supervisor.admission.inject import Defaults, Refused, inject
from supervisor.admission.mesh import ports
from supervisor.admission.webhook import Webhook
from tests.k8s_rules import pod_problems

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "admission"
DEFAULTS = Defaults(image="litestream-supervisor:0.1.0", bucket="litestream", endpoint="http://minio.minio.svc:9000",
                    role_arn="arn:minio:iam:::role/oxnUw3DAuQF1uggjXGxI2AmW8IA")


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.pod.json").read_text())


def patched(pod: dict[str, Any], defaults: Defaults = DEFAULTS) -> dict[str, Any]:
    result = jsonpatch.apply_patch(copy.deepcopy(pod), inject(pod, defaults, "shop").patch)
    assert pod_problems(result["spec"], configmaps={}) == []
    return result


# --- 1, 2: meshes ---

def test_istio_native_mode_keeps_working_after_its_proxy() -> None:
    names = [c["name"] for c in patched(fixture("istio-native-and-migration"))["spec"]["initContainers"]]
    assert names == ["istio-init", "istio-proxy", "litestream-restore", "litestream", "migrate"]


@pytest.mark.parametrize("endpoint", ["https://s3.example.com", "http://rgw.ceph:8080"])
def test_classic_mode_needs_exactly_the_endpoints_port_excluded(endpoint: str) -> None:
    """The port checked is the one the containers will dial (443 for https without a port)."""
    pod = fixture("istio-classic-ports-excluded")  # excludes 9000: the default endpoint's port only
    defaults = Defaults(**{**DEFAULTS.__dict__, "endpoint": endpoint})
    with pytest.raises(Refused, match="excludeOutboundPorts"):
        inject(pod, defaults, "shop")
    port = "443" if endpoint.startswith("https") else "8080"
    pod["metadata"]["annotations"]["traffic.sidecar.istio.io/excludeOutboundPorts"] = f"15020,{port}"
    assert inject(pod, defaults, "shop").patch


def test_the_endpoint_annotation_is_the_port_checked() -> None:
    pod = fixture("istio-classic-ports-excluded")
    pod["metadata"]["annotations"]["litestream-supervisor.io/endpoint"] = "http://minio.storage:9100"
    with pytest.raises(Refused, match='excludeOutboundPorts: "9100"'):
        inject(pod, DEFAULTS, "shop")


def test_linkerd_port_ranges_are_read_as_linkerd_reads_them() -> None:
    pod = fixture("refused/linkerd-classic")
    pod["metadata"]["annotations"].update({"config.linkerd.io/skip-outbound-ports": "25,9000-9100",
                                           "config.linkerd.io/skip-inbound-ports": "9090-9099"})
    assert inject(pod, DEFAULTS, "shop").patch
    assert ports("1-3, 7") == {1, 2, 3, 7} and ports("") == set() and ports("nine") is None
    pod["metadata"]["annotations"]["config.linkerd.io/skip-inbound-ports"] = "all"
    with pytest.raises(Refused, match="expected port numbers"):
        inject(pod, DEFAULTS, "shop")


def test_our_webhook_is_called_after_the_meshes_injectors() -> None:
    """Mutating webhooks are called in order of their configurations' names in practice (not a
    guarantee: reference notes, Istio/Azure threads): our name must sort after the meshes', so their
    containers are there to be seen (and ours inserted after them)."""
    import yaml
    hook = Path(__file__).resolve().parents[2] / "manifests/webhook/mutatingwebhook.yaml"
    config = yaml.safe_load(hook.read_text())
    ours = config["metadata"]["name"]
    for mesh in ("istio-sidecar-injector", "istio-revision-tag-default", "linkerd-proxy-injector-webhook-config"):
        assert mesh < ours


# --- 3: subPath mounts ---

def test_a_subpath_mount_at_the_db_directory_is_the_data_volume() -> None:
    """The old rule skipped subPath mounts: it added a second mount at /var/lib/web (rejected by the
    API server) or an emptyDir that hid the app's volume. Now our containers mount the same subPath."""
    result = patched(fixture("subpath-data-volume"))
    for c in result["spec"]["initContainers"]:
        assert c["volumeMounts"][0] == {"name": "data", "mountPath": "/var/lib/litestream/data", "subPath": "web"}
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert env["LITESTREAM_SUPERVISOR_DB"] == "/var/lib/litestream/data/db/web.db"
    assert [v["name"] for v in result["spec"]["volumes"] if v["name"] == "litestream-data"] == []
    paths = [m["mountPath"] for m in result["spec"]["containers"][0]["volumeMounts"]]
    assert len(paths) == len(set(paths))


def test_a_subpath_mount_wins_over_a_parent_mount_of_another_volume() -> None:
    pod = fixture("subpath-data-volume")
    pod["spec"]["containers"][0]["volumeMounts"].append({"name": "cache", "mountPath": "/var"})
    pod["spec"]["volumes"].append({"name": "cache", "emptyDir": {}})
    (restore, _) = [c for c in patched(pod)["spec"]["initContainers"] if c["name"].startswith("litestream")]
    assert restore["volumeMounts"][0]["name"] == "data"


def test_subpathexpr_and_a_file_mount_at_the_db_are_refused() -> None:
    pod = fixture("subpath-data-volume")
    mount = pod["spec"]["containers"][0]["volumeMounts"][0]
    mount["subPathExpr"] = mount.pop("subPath").replace("web", "$(POD_NAME)")
    with pytest.raises(Refused, match="subPathExpr"):
        inject(pod, DEFAULTS, "shop")
    pod = fixture("subpath-data-volume")
    pod["spec"]["containers"][0]["volumeMounts"][0] = {"name": "data", "mountPath": "/var/lib/web/db/web.db",
                                                       "subPath": "web.db"}
    with pytest.raises(Refused, match="single file at the database's path"):
        inject(pod, DEFAULTS, "shop")


# --- 4: pods that cannot run, and soft rules ---

@pytest.mark.parametrize("where", ["pod", "container"])
def test_an_app_running_as_root_is_refused(where: str) -> None:
    pod = fixture("no-data-volume")
    if where == "pod":
        pod["spec"]["securityContext"] = {"runAsUser": 0}
    else:
        pod["spec"]["containers"][0]["securityContext"] = {"runAsUser": 0}
    with pytest.raises(Refused, match=r"uid 0.*runAsUser"):
        inject(pod, DEFAULTS, "shop")
    # what the API server / kubelet would have done with the old patch: runAsNonRoot and uid 0
    pod["spec"].get("securityContext", {}).pop("runAsUser", None)
    pod["spec"]["containers"][0].pop("securityContext", None)
    assert patched(pod)


def test_the_rule_catches_what_the_kubelet_refuses() -> None:
    spec = {"securityContext": {"runAsUser": 0}, "containers": [
        {"name": "a", "image": "a", "securityContext": {"runAsNonRoot": True}}]}
    assert any("runAsNonRoot" in p for p in pod_problems(spec, configmaps={}))


def test_a_short_grace_period_is_a_warning_in_the_admission_review() -> None:
    pod = fixture("deployment-own-data-volume")
    pod["spec"]["terminationGracePeriodSeconds"] = 15
    answer = Webhook(DEFAULTS).review({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                                       "request": {"uid": "u1", "operation": "CREATE", "namespace": "shop",
                                                   "object": pod}})["response"]
    assert answer["allowed"] is True and answer["patch"]
    (warning,) = answer["warnings"]
    assert "terminationGracePeriodSeconds 15 < 30" in warning and len(warning) <= 120
    pod["spec"]["terminationGracePeriodSeconds"] = 60
    assert "warnings" not in Webhook(DEFAULTS).review({"request": {"uid": "u", "object": pod,
                                                                   "namespace": "shop"}})["response"]


def test_inject_file_warns_about_replicas_and_strategy() -> None:
    template = fixture("deployment-own-data-volume")
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                  "spec": {"replicas": 3, "template": {"metadata": {
                      "labels": template["metadata"]["labels"], "annotations": template["metadata"]["annotations"]},
                      "spec": template["spec"]}}}
    _, notes = inject_documents([deployment], DEFAULTS)
    warnings = [n for n in notes if ": warning: " in n]
    assert any("replicas 3 > 1" in w for w in warnings) and any("not Recreate" in w for w in warnings)
    deployment["spec"].update(replicas=1, strategy={"type": "Recreate"})
    _, notes = inject_documents([deployment], DEFAULTS)
    assert not [n for n in notes if ": warning: " in n]


# --- the data volume is the one the app's own container mounts (hostile review, adm2) ---

def test_an_init_containers_mount_is_not_the_apps_data_volume() -> None:
    """A volume is visible only in the containers that mount it (Pod spec: volumeMounts are per
    container). An init container `seed` mounting `data` at /var/lib/web while the app mounts nothing
    there: the old rule restored into `data`, which the app never sees (it would open an empty
    database in its image's filesystem). Refused, naming both containers and what to mount."""
    pod = fixture("no-data-volume")
    pod["spec"]["initContainers"] = [{"name": "seed", "image": "seed:1",
                                      "volumeMounts": [{"name": "data", "mountPath": "/var/lib/web"}]}]
    pod["spec"]["volumes"].append({"name": "data", "emptyDir": {}})
    with pytest.raises(Refused, match=r"'seed' mounts volume 'data' at /var/lib/web.*'web'"):
        inject(pod, DEFAULTS, "shop")
    # the same volume mounted in the app too: the seed fills what the app reads
    pod["spec"]["containers"][0]["volumeMounts"].append({"name": "data", "mountPath": "/var/lib/web"})
    (restore, _) = [c for c in patched(pod)["spec"]["initContainers"] if c["name"].startswith("litestream")]
    assert restore["volumeMounts"][0]["name"] == "data"


def test_another_container_mounting_a_different_volume_at_the_db_directory_is_refused() -> None:
    """Each container sees its own mount at a path: an init container writing the database into
    another volume than the app's (or another subPath of it) writes files the app never reads."""
    pod = fixture("deployment-own-data-volume")  # web mounts `data` at /data, db /data/app.db
    pod["spec"]["volumes"].append({"name": "seed", "emptyDir": {}})
    pod["spec"]["initContainers"] = [{"name": "migrate", "image": "m:1",
                                      "volumeMounts": [{"name": "seed", "mountPath": "/data"}]}]
    with pytest.raises(Refused, match=r"'migrate' mounts volume 'seed' at /data.*'web' mounts 'data'"):
        inject(pod, DEFAULTS, "shop")
    pod["spec"]["initContainers"][0]["volumeMounts"] = [{"name": "data", "mountPath": "/data", "subPath": "x"}]
    with pytest.raises(Refused, match="'migrate'"):
        inject(pod, DEFAULTS, "shop")
    pod["spec"]["initContainers"][0]["volumeMounts"] = [{"name": "data", "mountPath": "/srv"}]  # elsewhere: fine
    assert patched(pod)


def test_app_containers_that_mount_the_db_directory_must_agree() -> None:
    """Two app containers mounting different volumes at the db's directory: which one holds the
    database cannot be told, so it is refused naming both; one mount only (a metrics sidecar with
    none there) is the data volume."""
    pod = fixture("deployment-own-data-volume")
    pod["spec"]["volumes"].append({"name": "other", "emptyDir": {}})
    pod["spec"]["containers"].insert(0, {"name": "metrics", "image": "m:1",
                                         "volumeMounts": [{"name": "other", "mountPath": "/data"}]})
    with pytest.raises(Refused, match=r"'metrics'.*'other'.*'web'.*'data'|'web'.*'data'.*'metrics'.*'other'"):
        inject(pod, DEFAULTS, "shop")
    pod["spec"]["containers"][0]["volumeMounts"] = [{"name": "other", "mountPath": "/metrics"}]
    (restore, _) = [c for c in patched(pod)["spec"]["initContainers"] if c["name"].startswith("litestream")]
    assert restore["volumeMounts"][0]["name"] == "data"


def test_the_injected_containers_take_the_uid_of_the_container_with_the_data() -> None:
    """A container's securityContext.runAsUser overrides the pod's (PodSecurityContext: "the value
    specified in SecurityContext takes precedence"). The uid taken is the one of the app container
    that mounts the data volume, not the first container's (a metrics sidecar), and not the pod's
    when the container overrides it: SQLite's files are created with that uid."""
    pod = fixture("deployment-own-data-volume")  # web: uid 1000, mounts data at /data
    pod["spec"]["containers"].insert(0, {"name": "metrics", "image": "m:1",
                                         "securityContext": {"runAsUser": 2000, "runAsGroup": 2000}})
    for c in [c for c in patched(pod)["spec"]["initContainers"] if c["name"].startswith("litestream")]:
        assert (c["securityContext"]["runAsUser"], c["securityContext"]["runAsGroup"]) == (1000, 1000)
    pod = fixture("deployment-own-data-volume")
    pod["spec"]["securityContext"] = {"runAsUser": 3000, "fsGroup": 3000}
    for c in [c for c in patched(pod)["spec"]["initContainers"] if c["name"].startswith("litestream")]:
        assert c["securityContext"]["runAsUser"] == 1000  # the container's, over the pod's


def test_root_is_refused_in_the_container_with_the_data() -> None:
    """The kubelet refuses runAsNonRoot with uid 0 at container start: the app container writing
    the database as root makes ours (same uid) never start, whichever container comes first. And a
    pod-level uid 0 that the data container overrides is not the app's uid."""
    pod = fixture("deployment-own-data-volume")
    pod["spec"]["containers"][0]["securityContext"] = {"runAsUser": 0}
    pod["spec"]["containers"].insert(0, {"name": "metrics", "image": "m:1", "securityContext": {"runAsUser": 2000}})
    with pytest.raises(Refused, match=r"uid 0.*'web'.*runAsUser"):
        inject(pod, DEFAULTS, "shop")
    pod = fixture("deployment-own-data-volume")
    pod["spec"]["securityContext"] = {"runAsUser": 0}  # web overrides it with 1000
    assert patched(pod)


# --- an emptyDir added at the db's directory hides what the image has there ---

@pytest.mark.parametrize(("db", "working_dir", "annotated", "message"), [
    ("/app.db", None, True, r"at / \(the database's directory\) in container 'web'"),
    ("/app/data.db", "/app", True, r"at /app \(the database's directory\) in container 'web'.*workingDir"),
    ("/srv/app/data.db", "/srv/app/src", True, r"at /srv/app .*'web'.*workingDir"),
    ("/data/app.db", None, False, r"at /data .*'web'.*litestream-supervisor.io/data-volume-ok"),
])
def test_an_emptydir_that_would_hide_the_images_files_is_refused(db: str, working_dir: str | None, annotated: bool,
                                                                  message: str) -> None:
    """A volume mounted at a path hides what the image has there (the container runtime's bind
    mount over the image's rootfs): an emptyDir at / leaves the container nothing to run, one at its
    workingDir (or above it) hides the app's code. The image's own WORKDIR is not in the pod spec,
    so a top-level directory (/app, /data) needs the annotation saying the image has nothing there."""
    pod = fixture("no-data-volume")
    pod["metadata"]["annotations"]["litestream-supervisor.io/db"] = db
    if working_dir:
        pod["spec"]["containers"][0]["workingDir"] = working_dir
    if annotated:  # the annotation does not make / or the workingDir safe
        pod["metadata"]["annotations"]["litestream-supervisor.io/data-volume-ok"] = "true"
    with pytest.raises(Refused, match=message):
        inject(pod, DEFAULTS, "shop")


def test_an_emptydir_below_the_working_dir_or_annotated_is_added() -> None:
    pod = fixture("no-data-volume")
    pod["metadata"]["annotations"]["litestream-supervisor.io/db"] = "/app/db/data.db"
    pod["spec"]["containers"][0]["workingDir"] = "/app"
    assert {"name": "litestream-data", "mountPath": "/app/db"} in patched(pod)["spec"]["containers"][0]["volumeMounts"]
    pod = fixture("no-data-volume")
    pod["metadata"]["annotations"].update({"litestream-supervisor.io/db": "/data/app.db",
                                           "litestream-supervisor.io/data-volume-ok": "true"})
    assert {"name": "litestream-data", "mountPath": "/data"} in patched(pod)["spec"]["containers"][0]["volumeMounts"]
    pod["metadata"]["annotations"]["litestream-supervisor.io/data-volume-ok"] = "yes"
    with pytest.raises(Refused, match="data-volume-ok"):
        inject(pod, DEFAULTS, "shop")


@pytest.mark.parametrize("name", ["litestream-data", "litestream-tmp", "litestream-token"])
def test_the_volume_names_we_add_are_reserved(name: str) -> None:
    """The API server rejects a pod with two volumes of one name (spec.volumes[].name: Duplicate
    value): the app's own volume named as one of ours made the injected pod unschedulable."""
    pod = fixture("no-data-volume")
    pod["spec"]["volumes"].append({"name": name, "emptyDir": {}})
    with pytest.raises(Refused, match=rf"volume '{name}'.*reserved.*rename"):
        inject(pod, DEFAULTS, "shop")
