"""What the API server enforces beyond the OpenAPI schema (kubernetes-validate passes all of these),
and "the render differs from the input only by additions". Used by the manifest tests and, for
injected pods, by the webhook tests."""

from __future__ import annotations

import re
from typing import Any

VOLUME_SOURCES = frozenset({
    "emptyDir", "persistentVolumeClaim", "configMap", "secret", "projected", "hostPath", "downwardAPI",
    "ephemeral", "nfs", "csi", "image", "iscsi", "cephfs", "rbd", "awsElasticBlockStore", "gcePersistentDisk",
    "azureDisk", "azureFile", "fc", "flexVolume", "flocker", "glusterfs", "photonPersistentDisk",
    "portworxVolume", "quobyte", "scaleIO", "storageos", "vsphereVolume", "gitRepo", "cinder",
})
PORT_NAME = re.compile(r"^(?=.*[a-z])[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
WELL_KNOWN_CONFIGMAPS = frozenset({"kube-root-ca.crt"})


def pod_problems(pod: dict[str, Any], configmaps: dict[str, dict[str, Any]],
                 secrets: frozenset[str] = frozenset()) -> list[str]:
    """Problems the API server (or the kubelet, for references) would reject or fail on."""
    problems: list[str] = []
    volumes = pod.get("volumes", [])
    names = [v["name"] for v in volumes]
    problems += [f"volume {n!r} declared twice" for n in sorted({n for n in names if names.count(n) > 1})]
    for v in volumes:
        sources = [k for k in v if k in VOLUME_SOURCES]
        if len(sources) != 1:
            problems.append(f"volume {v['name']!r} has {len(sources)} sources {sources} (exactly one allowed)")
        if "configMap" in v and v["configMap"]["name"] not in configmaps | dict.fromkeys(WELL_KNOWN_CONFIGMAPS) \
                and not v["configMap"].get("optional"):
            problems.append(f"volume {v['name']!r}: ConfigMap {v['configMap']['name']!r} is not in the render")
    claimed = set(names) | set(pod.get("_claim_templates", []))
    init, main = pod.get("initContainers", []), pod.get("containers", [])
    all_names = [c["name"] for c in init + main]
    problems += [f"container {n!r} declared twice" for n in sorted({n for n in all_names if all_names.count(n) > 1})]
    port_names: list[str] = []
    for c in init + main:
        where = f"container {c['name']!r}"
        is_init = c in init
        sidecar = is_init and c.get("restartPolicy") == "Always"
        if "restartPolicy" in c and not (is_init and c["restartPolicy"] == "Always"):
            problems.append(f"{where}: restartPolicy only 'Always' on an init container (a native sidecar)")
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            if is_init and not sidecar and probe in c:
                problems.append(f"{where}: {probe} on an init container that is not a native sidecar")
        if is_init and not sidecar and "lifecycle" in c:
            problems.append(f"{where}: lifecycle on an init container that is not a native sidecar")
        # API server (ValidateVolumeMounts): subPath and subPathExpr exclude each other; a relative path
        # without '..'. Kubelet: runAsNonRoot with uid 0 is refused when the container starts.
        for m in c.get("volumeMounts", []):
            sub = m.get("subPath") or ""
            if sub and m.get("subPathExpr"):
                problems.append(f"{where}: mount {m['mountPath']!r} has both subPath and subPathExpr")
            if sub.startswith("/") or ".." in sub.split("/"):
                problems.append(f"{where}: mount {m['mountPath']!r} subPath {sub!r} is not a relative path inside")
        pod_sc, sc = pod.get("securityContext") or {}, c.get("securityContext") or {}
        if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) and sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
            problems.append(f"{where}: runAsNonRoot with runAsUser 0 (the kubelet refuses to start it)")
        paths = [m["mountPath"] for m in c.get("volumeMounts", [])]
        problems += [f"{where}: mountPath {p!r} twice" for p in sorted({p for p in paths if paths.count(p) > 1})]
        for m in c.get("volumeMounts", []):
            if m["name"] not in claimed:
                problems.append(f"{where}: mounts volume {m['name']!r}, which the pod does not declare")
        for p in c.get("ports", []):
            if "name" in p:
                port_names.append(p["name"])
                if len(p["name"]) > 15 or not PORT_NAME.match(p["name"]):
                    problems.append(f"{where}: port name {p['name']!r} is not an IANA_SVC_NAME (<= 15 chars)")
        defined: set[str] = set()
        for src in c.get("envFrom", []):
            ref = src.get("configMapRef")
            if ref is not None:
                if ref["name"] not in configmaps:
                    problems.append(f"{where}: envFrom ConfigMap {ref['name']!r} is not in the render")
                else:
                    defined |= set(configmaps[ref["name"]].get("data", {}))
            sref = src.get("secretRef")
            if sref is not None and sref["name"] not in secrets and not sref.get("optional"):
                problems.append(f"{where}: envFrom Secret {sref['name']!r} is not in the render")
        for e in c.get("env", []):
            for ref in VAR_REF.findall(e.get("value", "")):
                if ref not in defined:
                    problems.append(f"{where}: env {e['name']} refers to $({ref}), not defined before it")
            key_ref = e.get("valueFrom", {}).get("configMapKeyRef")
            if key_ref is not None:
                cm = configmaps.get(key_ref["name"])
                if cm is None or key_ref["key"] not in cm.get("data", {}):
                    problems.append(f"{where}: env {e['name']} refers to ConfigMap key "
                                    f"{key_ref['name']}/{key_ref['key']}, not in the render")
            defined.add(e["name"])
    problems += [f"port name {n!r} used twice in the pod" for n in sorted({n for n in port_names
                                                                          if port_names.count(n) > 1})]
    return problems


def workload_problems(workload: dict[str, Any], configmaps: dict[str, dict[str, Any]]) -> list[str]:
    spec = workload["spec"]
    pod = dict(spec["template"]["spec"])
    pod["_claim_templates"] = [t["metadata"]["name"] for t in spec.get("volumeClaimTemplates", [])]
    problems = pod_problems(pod, configmaps)
    strategy = spec.get("strategy", {})
    if strategy.get("type") == "Recreate" and strategy.get("rollingUpdate") is not None:
        problems.append("strategy Recreate with rollingUpdate set (the API server rejects it)")
    return [f"{workload['kind']}/{workload['metadata']['name']}: {p}" for p in problems]


# The Job controller names a CronJob's Jobs <name>-<scheduled minute> (11 more characters), and a Job
# name must fit a 63-character label value (its pods' job-name label).
CRONJOB_NAME_MAX = 52


def cronjob_problems(cronjob: dict[str, Any], configmaps: dict[str, dict[str, Any]]) -> list[str]:
    """What the API server rejects in a CronJob beyond the schema (pkg/apis/batch/validation): a name
    over 52 characters; a schedule that is not five fields (or @daily...) or carries TZ= (timeZone is
    the field, an IANA zone name); a Job template whose pods restart other than Never or OnFailure;
    a podFailurePolicy without restartPolicy Never, a rule with both or neither of onExitCodes and
    onPodConditions, onExitCodes naming no container of the pod, or values that are not unique and
    ascending, or 0 with In; then the pod itself."""
    import zoneinfo

    problems: list[str] = []
    spec = cronjob["spec"]
    name = cronjob["metadata"]["name"]
    if len(name) > CRONJOB_NAME_MAX:
        problems.append(f"name {name!r} is {len(name)} characters (at most {CRONJOB_NAME_MAX})")
    schedule = spec["schedule"]
    if "TZ=" in schedule:
        problems.append(f"schedule {schedule!r}: TZ is not allowed (set timeZone)")
    elif not (schedule.startswith("@") or len(schedule.split()) == 5):
        problems.append(f"schedule {schedule!r}: not five fields")
    if "timeZone" in spec:
        try:
            zoneinfo.ZoneInfo(spec["timeZone"])
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            problems.append(f"timeZone {spec['timeZone']!r} is not a time zone name")
    job = spec["jobTemplate"]["spec"]
    pod = job["template"]["spec"]
    restart = pod.get("restartPolicy", "Always")
    if restart not in ("Never", "OnFailure"):
        problems.append(f"restartPolicy {restart!r}: a Job's pods restart Never or OnFailure")
    rules = (job.get("podFailurePolicy") or {}).get("rules", [])
    if rules and restart != "Never":
        problems.append("podFailurePolicy needs restartPolicy Never")
    containers = {c["name"] for c in pod.get("initContainers", []) + pod["containers"]}
    for i, rule in enumerate(rules):
        codes = rule.get("onExitCodes")
        if (codes is None) == (not rule.get("onPodConditions")):
            problems.append(f"podFailurePolicy rule {i}: exactly one of onExitCodes and onPodConditions")
        if codes is None:
            continue
        if codes.get("containerName") is not None and codes["containerName"] not in containers:
            problems.append(f"podFailurePolicy rule {i}: containerName {codes['containerName']!r} is not in the pod")
        values = codes.get("values", [])
        if codes.get("operator") == "In" and 0 in values:
            problems.append(f"podFailurePolicy rule {i}: 0 with the In operator")
        if len(set(values)) != len(values) or values != sorted(values):
            problems.append(f"podFailurePolicy rule {i}: values must be unique and ascending, got {values}")
    problems += pod_problems(pod, configmaps)
    return [f"CronJob/{name}: {p}" for p in problems]


def additions_only(before: Any, after: Any, path: str = "") -> list[str]:
    """Every field of `before` is in `after` with the same value (lists of named items by name)."""
    if isinstance(before, dict):
        if not isinstance(after, dict):
            return [f"{path}: was a mapping"]
        out = []
        for key, value in before.items():
            if key not in after:
                out.append(f"{path}.{key}: removed")
            else:
                out += additions_only(value, after[key], f"{path}.{key}")
        return out
    if isinstance(before, list) and not before:
        return [] if isinstance(after, list) else [f"{path}: was a list"]
    if isinstance(before, list) and all(isinstance(i, dict) and "name" in i for i in before):
        if not isinstance(after, list):
            return [f"{path}: was a list"]
        by_name = {i.get("name"): i for i in after if isinstance(i, dict)}
        out = []
        for item in before:
            match = by_name.get(item["name"])
            out += [f"{path}[{item['name']}]: removed"] if match is None else \
                additions_only(item, match, f"{path}[{item['name']}]")
        return out
    return [] if before == after else [f"{path}: {before!r} -> {after!r}"]


def _scaled(value: int | str, total: int, round_up: bool) -> int:
    if isinstance(value, str) and value.endswith("%"):
        exact = int(value[:-1]) * total / 100
        return int(-(-exact // 1)) if round_up else int(exact)
    return int(value)


def disruptions_allowed(pdb_spec: dict[str, Any], expected: int, healthy: int) -> int:
    """The disruption controller's arithmetic (pkg/controller/disruption/disruption.go): desired
    healthy pods from minAvailable (a percentage of the expected count, rounded up) or from
    expected - maxUnavailable (rounded up); an eviction is allowed while healthy - desired > 0."""
    if "minAvailable" in pdb_spec:
        desired = _scaled(pdb_spec["minAvailable"], expected, round_up=True)
    else:
        desired = expected - _scaled(pdb_spec.get("maxUnavailable", 0), expected, round_up=True)
    return max(healthy - desired, 0)


def drain(replicas: int, nodes: int, pdbs: list[dict[str, Any]], drained: int = 0) -> tuple[bool, int]:
    """`kubectl drain` of node `drained` (cordon, then evict its pods through the Eviction API,
    retrying) for a Deployment spread over `nodes`; the Deployment controller replaces each evicted
    pod on a schedulable node (Ready at once) or leaves it Pending. Returns (every pod left the node,
    fewest healthy pods seen)."""
    pods = [i % nodes for i in range(replicas)]  # node of each healthy pod (topology spread)
    fewest = replicas
    while drained in pods:
        if any(disruptions_allowed(p, replicas, len(pods)) <= 0 for p in pdbs):
            return False, fewest  # "Cannot evict pod as it would violate the pod's disruption budget", for ever
        pods.remove(drained)
        fewest = min(fewest, len(pods))
        schedulable = [n for n in range(nodes) if n != drained]
        if schedulable:
            pods.append(min(schedulable, key=pods.count))
    return True, fewest


def _flatten(obj: Any, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    if isinstance(obj, dict) and obj:
        out: dict[tuple[str, ...], Any] = {}
        for key, value in obj.items():
            out.update(_flatten(value, (*prefix, key)))
        return out
    return {prefix: obj}


def _unflatten(flat: dict[tuple[str, ...], Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path, value in flat.items():
        node = out
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return out


def _decoded(obj: Any) -> Any:
    """What the API server stores: a null decodes as an absent (nil) field."""
    if isinstance(obj, dict):
        return {k: _decoded(v) for k, v in obj.items() if v is not None}
    return obj


def deployment_defaults(deployment: dict[str, Any]) -> dict[str, Any]:
    """apps/v1 SetDefaults_Deployment, the strategy part: RollingUpdate unless set, and for it 25%/25%."""
    spec = deployment.setdefault("spec", {})
    strategy = spec.setdefault("strategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = strategy.setdefault("rollingUpdate", {})
        rolling.setdefault("maxSurge", "25%")
        rolling.setdefault("maxUnavailable", "25%")
    return deployment


Owners = dict[tuple[str, ...], set[str]]


def create(obj: dict[str, Any], manager: str, operation: str) -> tuple[dict[str, Any], Owners]:
    """A Deployment as stored after its creation: an Update-style create (kubectl create, client-side
    apply) owns every field of the defaulted object, as managedFields then show; an Apply owns only
    what it sent, and the defaults belong to nobody."""
    sent = _flatten(obj)
    stored = _flatten(deployment_defaults(_decoded(obj)))
    owned = stored if operation == "Update" else sent
    return _unflatten(stored), {path: {manager} for path in owned if path in stored}


def server_side_apply(live: dict[str, Any], owners: Owners, applied: dict[str, Any],
                      manager: str) -> tuple[dict[str, Any], Owners]:
    """Server-side apply with force (Flux, Argo CD): the applier sets and owns every field it sends;
    a field it owned and no longer sends is removed unless another manager owns it; every other field
    stays, owned or not (docs "Server-Side Apply"; kubernetes#89273). An explicit null is kept and
    decodes as absent (kubernetes-sigs/structured-merge-diff#235). Then defaults, as the API server."""
    flat, sent = _flatten(live), _flatten(applied)
    owners = {p: set(m) for p, m in owners.items()}
    for path in [p for p, m in owners.items() if manager in m and p not in sent]:
        owners[path].discard(manager)
        if not owners[path]:
            flat.pop(path, None)
            del owners[path]
    for path, value in sent.items():
        for existing in [p for p in flat if p[:len(path)] == path and p != path]:
            del flat[existing]  # a value replaces what was below it
        flat[path] = value
        owners.setdefault(path, set()).add(manager)
    return deployment_defaults(_decoded(_unflatten(flat))), owners


def labels_match(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    ok = all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())
    for e in selector.get("matchExpressions") or []:
        present, value = e["key"] in labels, labels.get(e["key"])
        ok &= {"In": present and value in e.get("values", []), "NotIn": value not in e.get("values", []),
               "Exists": present, "DoesNotExist": not present}[e["operator"]]
    return ok


def traffic_allowed(policies: list[dict[str, Any]], direction: str, pod: dict[str, Any],
                    peer: dict[str, Any], port: int, protocol: str = "TCP") -> bool:
    """NetworkPolicy semantics (networking.k8s.io/v1 docs): a pod is isolated for a direction when a
    policy in its namespace selects it with that direction in policyTypes; then traffic must match
    one rule of one of those policies (peers OR'ed, ports OR'ed; no `to`/`from` = any peer, no
    ports = any port). pod/peer: {"namespace", "labels", "ns_labels", "ip"}."""
    import ipaddress
    kind, peers_key = ("Egress", "to") if direction == "egress" else ("Ingress", "from")
    selecting = [p["spec"] for p in policies if p["metadata"].get("namespace", pod["namespace"]) == pod["namespace"]
                 and labels_match(p["spec"]["podSelector"], pod["labels"])
                 and kind in p["spec"].get("policyTypes", ["Ingress"] + (["Egress"] if "egress" in p["spec"] else []))]
    if not selecting:
        return True

    def peer_matches(rule_peer: dict[str, Any]) -> bool:
        if "ipBlock" in rule_peer:
            block = rule_peer["ipBlock"]
            ip = ipaddress.ip_address(peer.get("ip", "0.0.0.0"))
            return ip in ipaddress.ip_network(block["cidr"]) and \
                not any(ip in ipaddress.ip_network(c) for c in block.get("except", []))
        if "namespaceSelector" in rule_peer:
            if "namespace" not in peer or not labels_match(rule_peer["namespaceSelector"], peer.get("ns_labels", {})):
                return False
        elif peer.get("namespace") != pod["namespace"]:
            return False
        return "podSelector" not in rule_peer or labels_match(rule_peer["podSelector"], peer.get("labels", {}))

    for spec in selecting:
        for rule in spec.get(direction, []):
            peers_ok = not rule.get(peers_key) or any(peer_matches(p) for p in rule[peers_key])
            ports_ok = not rule.get("ports") or any(
                p.get("port") in (None, port) and p.get("protocol", "TCP") == protocol for p in rule["ports"])
            if peers_ok and ports_ok:
                return True
    return False


def quota_problems(pod: dict[str, Any], quota: set[str], containers: set[str] | None = None) -> list[str]:
    """A ResourceQuota on compute resources (e.g. "limits.cpu") makes the API server reject a pod with
    a container that does not set that value (docs "Resource Quotas"; a LimitRange default would
    fill it, none is assumed). `containers`: only these names (ours)."""
    out = []
    for c in pod.get("initContainers", []) + pod.get("containers", []):
        if containers is not None and c["name"] not in containers:
            continue
        for item in sorted(quota):
            kind, resource = item.split(".")
            if resource not in (c.get("resources") or {}).get(kind, {}):
                out.append(f"container {c['name']!r}: no {item} (a quota on {item} rejects the pod)")
    return out
