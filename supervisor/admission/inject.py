"""What the admission webhook and `inject` add to a pod: one pure function, JSON Patch `add` only.

Rules (each one is a bug some injector shipped):
- the pod stays raw JSON; only explicit `add` operations, never a re-encoded container list (that
  is how injectors stripped `restartPolicy: Always` and `startupProbe` from users' containers);
- the restore and the native sidecar go after mesh init containers and proxies, before the app's
  own init containers (a migration must see the restored database);
- the db volume is the one the app's own containers mount at or above the db's directory (subPath
  mounts included; never an init container's), an emptyDir added only when they mount none and
  it would hide none of the image's files (supervisor/admission/podchecks.py);
- a pod our containers could not run in is refused: uid 0, a mesh capturing their traffic
  (supervisor/admission/mesh.py); soft risks come back as warnings;
- the injected containers run with the uid the app writes with; names are `litestream-*`, and a
  pod whose own containers or volumes take those names is refused;
- a status annotation records the injection: a second admission adds nothing;
- the workload (which names the default replica path and the lease) is set exactly, from the
  pod's owner (supervisor/admission/owner.py), never left to a pod name that may hold a random suffix.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar
from urllib.parse import urlsplit

from supervisor.admission import mesh, owner, podchecks
from supervisor.admission.podchecks import DataMount, Refused
from supervisor.core.workload import WORKLOAD_NAME  # what the runtime accepts as --workload

PREFIX = "litestream-supervisor.io/"
INJECT_LABEL = PREFIX + "inject"
STATUS = PREFIX + "status"
WORKLOAD = PREFIX + "workload"
REPLICATED_LABEL = PREFIX + "replicated"
MESH_FIRST = mesh.MESH_CONTAINERS  # ours go after these init containers, and they are not the app
HEALTH_PORT = 9091
CPU_QUANTITY = re.compile(r"(?=.*[1-9])[0-9]+(\.[0-9]{1,3})?|[0-9]*[1-9][0-9]*m")  # positive: 0.5, 1, 250m
SYSTEM_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease"})
TOKEN_DIR = "/var/run/secrets/litestream"  # noqa: S105 (a path, not a secret)
# Where the injected containers mount the volume holding the db, as the Component does: the same
# files and locks as the app sees, whatever path the app mounts the volume at.
DATA_DIR = "/var/lib/litestream/data"
# The volumes we add: the API server rejects a pod declaring one volume name twice, so an app's own
# volume of one of these names is refused instead of getting a duplicate.
RESERVED_VOLUMES = ("litestream-data", "litestream-tmp", "litestream-token")


@dataclass(frozen=True)
class Defaults:
    """Cluster-wide defaults (flags / LITESTREAM_SUPERVISOR_*); pod annotations override them."""

    image: str = "litestream-supervisor:0.1.0"
    bucket: str | None = None
    endpoint: str | None = None
    role_arn: str | None = None
    region: str = "us-east-1"
    audience: str = "sts.amazonaws.com"
    token_expiration_seconds: int = 3600
    sidecar: str = "native"  # native | legacy
    shutdown_timeout_seconds: int = 20
    memory_request: str = "128Mi"
    memory_limit: str = "320Mi"
    cpu_request: str = "20m"
    cpu_limit: str | None = None  # for namespaces whose ResourceQuota demands one (limits.cpu)
    own_namespace: str | None = None  # the webhook's: never injected
    extra: Mapping[str, str] = field(default_factory=dict)

    ANNOTATIONS: ClassVar[dict[str, str]] = {  # annotation name -> field
        "image": "image", "bucket": "bucket", "endpoint": "endpoint", "role-arn": "role_arn",
        "region": "region", "audience": "audience", "token-expiration": "token_expiration_seconds",
        "sidecar": "sidecar", "shutdown-timeout": "shutdown_timeout_seconds", "cpu-limit": "cpu_limit",
    }

    def for_pod(self, annotations: Mapping[str, str]) -> Defaults:
        changes: dict[str, Any] = {}
        for name, attr in self.ANNOTATIONS.items():
            value = annotations.get(PREFIX + name)
            if value is None:
                continue
            if attr in ("token_expiration_seconds", "shutdown_timeout_seconds"):
                if not value.isdigit():
                    raise Refused(f"annotation {PREFIX}{name}: expected whole seconds, got {value!r}")
                changes[attr] = int(value)
            else:
                changes[attr] = value
        if changes.get("sidecar", self.sidecar) not in ("native", "legacy"):
            raise Refused(f"annotation {PREFIX}sidecar: expected native or legacy, got {changes['sidecar']!r}")
        cpu_limit = changes.get("cpu_limit", self.cpu_limit)
        if cpu_limit is not None and not CPU_QUANTITY.fullmatch(cpu_limit):
            raise Refused(f"annotation {PREFIX}cpu-limit: expected a CPU quantity such as 500m or 1, got {cpu_limit!r}")
        if changes.get("token_expiration_seconds", self.token_expiration_seconds) < 600:
            raise Refused(f"annotation {PREFIX}token-expiration: the kubelet's minimum is 600 seconds")
        return replace(self, **changes)


@dataclass(frozen=True)
class Injection:
    patch: list[dict[str, Any]]
    summary: dict[str, Any]  # what was added, for the status annotation, logs and `inject`
    warnings: list[str] = field(default_factory=list)  # soft rules broken (admission `warnings`)


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _env(d: Defaults, db: str, replica_path: str | None, workload: str | None) -> list[dict[str, Any]]:
    def field_ref(path: str) -> dict[str, Any]:
        return {"valueFrom": {"fieldRef": {"fieldPath": path}}}

    env: list[dict[str, Any]] = [
        {"name": "LITESTREAM_SUPERVISOR_DB", "value": db},
        {"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": f"{TOKEN_DIR}/token"},
        {"name": "AWS_REGION", "value": d.region},
    ]
    if d.role_arn:
        env.append({"name": "AWS_ROLE_ARN", "value": d.role_arn})
    if d.endpoint:
        env += [{"name": "AWS_ENDPOINT_URL_STS", "value": d.endpoint},
                {"name": "AWS_ENDPOINT_URL_S3", "value": d.endpoint}]
    if d.bucket:
        env.append({"name": "LITESTREAM_SUPERVISOR_BUCKET", "value": d.bucket})
    if replica_path:
        env.append({"name": "LITESTREAM_SUPERVISOR_REPLICA_PATH", "value": replica_path})
    if d.audience:
        env.append({"name": "LITESTREAM_SUPERVISOR_AUDIENCE", "value": d.audience})
    env += [{"name": "POD_NAME", **field_ref("metadata.name")},
            {"name": "POD_NAMESPACE", **field_ref("metadata.namespace")},
            {"name": "POD_UID", **field_ref("metadata.uid")},
            {"name": "POD_SERVICE_ACCOUNT", **field_ref("spec.serviceAccountName")},
            {"name": "POD_TEMPLATE_HASH", **field_ref("metadata.labels['pod-template-hash']")}]
    if workload:  # after POD_NAME: a StatefulSet template's is $(POD_NAME), expanded by the kubelet
        env.append({"name": "LITESTREAM_SUPERVISOR_WORKLOAD", "value": workload})
    return env


def containers(d: Defaults, db: str, data: DataMount, replica_path: str | None, workload: str | None,
               user: Mapping[str, int]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The restore init container and the replicate sidecar, as the Component defines them."""
    data_mount: dict[str, Any] = {"name": data.volume, "mountPath": DATA_DIR}
    if data.sub_path:
        data_mount["subPath"] = data.sub_path
    mounts = [data_mount,
              {"name": "litestream-token", "mountPath": TOKEN_DIR, "readOnly": True},
              {"name": "litestream-tmp", "mountPath": "/tmp"}]
    security = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
                "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}, **user}
    resources = {"requests": {"cpu": d.cpu_request, "memory": d.memory_request}, "limits": {"memory": d.memory_limit}}
    if d.cpu_limit:
        resources["limits"]["cpu"] = d.cpu_limit
    env = _env(d, db, replica_path, workload)
    restore = {"name": "litestream-restore", "image": d.image, "args": ["restore"], "env": env,
               "volumeMounts": mounts, "securityContext": security, "resources": resources}
    sidecar: dict[str, Any] = {
        "name": "litestream", "image": d.image,
        "args": ["replicate", "--health-addr", f"0.0.0.0:{HEALTH_PORT}",
                 "--shutdown-timeout", str(d.shutdown_timeout_seconds)],
        "env": env, "ports": [{"name": "litestream-http", "containerPort": HEALTH_PORT}],
        "livenessProbe": {"httpGet": {"path": "/livez", "port": "litestream-http"}, "periodSeconds": 10,
                          "failureThreshold": 3},
        "readinessProbe": {"httpGet": {"path": "/readyz?exclude=credentials&exclude=lease&exclude=litestream",
                                       "port": "litestream-http"}, "periodSeconds": 5},
        "volumeMounts": mounts, "securityContext": security, "resources": resources,
    }
    if d.sidecar == "native":
        sidecar = {"name": "litestream", "image": d.image, "restartPolicy": "Always",
                   **{k: v for k, v in sidecar.items() if k not in ("name", "image")},
                   "startupProbe": {"httpGet": {"path": "/readyz", "port": "litestream-http"}, "periodSeconds": 2,
                                    "failureThreshold": 150}}
    else:
        sidecar["lifecycle"] = {"preStop": {"exec": {"command": ["sleep", "10"]}}}
    return restore, sidecar


def volumes(d: Defaults) -> list[dict[str, Any]]:
    return [{"name": "litestream-tmp", "emptyDir": {"sizeLimit": "64Mi"}},
            {"name": "litestream-token", "projected": {"sources": [{"serviceAccountToken": {
                "path": "token", "audience": d.audience, "expirationSeconds": d.token_expiration_seconds}}]}}]


def endpoint_ports(d: Defaults) -> set[int]:
    """The ports our containers reach STS and S3 on (one endpoint; AWS's HTTPS when none is set)."""
    if not d.endpoint:
        return {443}
    try:
        parts = urlsplit(d.endpoint)
        return {parts.port or (80 if parts.scheme == "http" else 443)}
    except ValueError:
        raise Refused(f"endpoint {d.endpoint!r}: not a URL with a valid port") from None


def workload_of(meta: Mapping[str, Any], template_workload: str | None) -> owner.Owner:
    """The annotation, else what `inject -f` knows of a template's workload, else the pod's owner."""
    annotations = meta.get("annotations") or {}
    explicit = annotations.get(WORKLOAD)
    if explicit is not None:
        if not WORKLOAD_NAME.fullmatch(explicit):
            raise Refused(f"annotation {WORKLOAD}: expected a Kubernetes object name (lowercase letters, digits, "
                          f"'-' and '.'), got {explicit!r}")
        return owner.Owner(explicit, f"annotation {WORKLOAD}")
    if template_workload:
        return owner.Owner(template_workload, "the workload's name")
    return owner.of_pod(meta)


def inject(pod: Mapping[str, Any], defaults: Defaults, namespace: str | None = None,
           template_workload: str | None = None) -> Injection:
    """The patch for one pod (or pod template: metadata + spec); empty when already injected or not
    opted in. Refused (with an actionable message) when it opted in but cannot be done safely.
    template_workload: `inject -f` on a workload's template (its name, or $(POD_NAME))."""
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    if labels.get(INJECT_LABEL) != "true":
        return Injection([], {"skipped": f"no label {INJECT_LABEL}=true"})
    if STATUS in annotations:
        return Injection([], {"skipped": "already injected", "status": annotations[STATUS]})
    ns = namespace or meta.get("namespace")
    if ns in SYSTEM_NAMESPACES or (ns is not None and ns == defaults.own_namespace):
        raise Refused(f"namespace {ns} is a system namespace (or the webhook's own): not injected")
    db = annotations.get(PREFIX + "db")
    if not db or not db.startswith("/") or db.endswith("/"):
        raise Refused(f"annotation {PREFIX}db: the database's absolute path is required (e.g. /data/app.db), "
                      f"got {db!r}")
    db = posixpath.normpath(db)
    d = defaults.for_pod(annotations)
    if not d.bucket:
        raise Refused(f"no bucket: set annotation {PREFIX}bucket or the webhook's --bucket")
    replica_path = annotations.get(PREFIX + "replica-path")
    workload = workload_of(meta, template_workload)
    if workload.workload is None and not replica_path:
        raise Refused(f"cannot tell this pod's workload exactly ({workload.how}): set annotation {WORKLOAD} to the "
                      f"name its replacements share (it names the default replica path and the lease), or "
                      f"{PREFIX}replica-path")
    name = meta.get("name") or ""
    ordinal = name.rsplit("-", 1)[-1]
    if replica_path and (owner.controller(meta) or {}).get("kind") == "StatefulSet" and ordinal.isdigit() \
            and int(ordinal) >= 1:
        raise Refused(f"StatefulSet pod {name} (ordinal >= 1) with a fixed {PREFIX}replica-path: every replica would "
                      "write the same replica; drop the annotation (each pod then gets its own prefix) or scale to 1")
    spec = pod.get("spec") or {}
    for c in spec.get("initContainers", []) + spec.get("containers", []):
        if c.get("name", "").startswith("litestream"):
            raise Refused(f"container {c['name']!r} already exists: names starting with 'litestream' are reserved")
    for v in spec.get("volumes") or []:
        if v.get("name") in RESERVED_VOLUMES:
            raise Refused(f"volume {v['name']!r} (spec.volumes) already exists: {', '.join(RESERVED_VOLUMES)} are "
                          "reserved for the injected containers; rename it (and its volumeMounts)")
    # the app container holding the data: its volume is ours, its uid our containers' (they share the files)
    app = podchecks.app_data(spec, db)
    refusals = [p for p in [podchecks.root_problem(spec, app.container)] if p] + \
        mesh.problems(pod, endpoint_ports(d), HEALTH_PORT)
    if refusals:
        raise Refused("; ".join(refusals))
    patch: list[dict[str, Any]] = []
    db_dir = posixpath.dirname(db)
    data = app.mount
    added_volumes = volumes(d)
    if data is None:
        hidden = podchecks.empty_dir_problem(spec, db, annotations)
        if hidden:
            raise Refused(hidden)
        data = DataMount("litestream-data", db_dir)
        added_volumes.append({"name": "litestream-data", "emptyDir": {}})
        for i, c in enumerate(spec.get("containers", [])):
            if c.get("name") in MESH_FIRST:
                continue
            mount = {"name": "litestream-data", "mountPath": db_dir}
            if c.get("volumeMounts") is None:
                patch.append({"op": "add", "path": f"/spec/containers/{i}/volumeMounts", "value": [mount]})
            else:
                patch.append({"op": "add", "path": f"/spec/containers/{i}/volumeMounts/-", "value": mount})
    inside = posixpath.join(DATA_DIR, posixpath.relpath(db, data.path))  # the db as our containers see it
    restore, sidecar = containers(d, inside, data, replica_path, workload.workload, podchecks.app_user(app.container))
    init = spec.get("initContainers")
    ours = [restore, sidecar] if d.sidecar == "native" else [restore]
    if init is None:
        patch.append({"op": "add", "path": "/spec/initContainers", "value": ours})
    else:
        at = max((i + 1 for i, c in enumerate(init) if c.get("name") in MESH_FIRST), default=0)
        patch += [{"op": "add", "path": f"/spec/initContainers/{at + k}", "value": c} for k, c in enumerate(ours)]
    if d.sidecar == "legacy":
        patch.append({"op": "add", "path": "/spec/containers/-", "value": sidecar})
    if spec.get("volumes") is None:
        patch.append({"op": "add", "path": "/spec/volumes", "value": added_volumes})
    else:
        patch += [{"op": "add", "path": "/spec/volumes/-", "value": v} for v in added_volumes]
    summary = {"containers": [c["name"] for c in (restore, sidecar)], "volumes": [v["name"] for v in added_volumes],
               "db": db, "data_volume": data.volume, "sidecar": d.sidecar, "workload": workload.workload}
    # the same pod label the Component adds (what the optional NetworkPolicy selects on)
    patch.append({"op": "add", "path": f"/metadata/labels/{_escape(REPLICATED_LABEL)}", "value": "true"})
    status = json.dumps(summary, sort_keys=True, separators=(",", ":"))
    if pod.get("metadata") is None:
        patch.append({"op": "add", "path": "/metadata", "value": {"annotations": {STATUS: status}}})
    elif meta.get("annotations") is None:
        patch.append({"op": "add", "path": "/metadata/annotations", "value": {STATUS: status}})
    else:
        patch.append({"op": "add", "path": f"/metadata/annotations/{_escape(STATUS)}", "value": status})
    return Injection(patch, summary, podchecks.warnings(spec, d.shutdown_timeout_seconds))
