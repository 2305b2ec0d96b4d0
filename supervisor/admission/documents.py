"""`inject -f`: the injection applied to YAML documents: pods, and the pod templates of the workloads
whose pods share one replica (Deployment, ReplicaSet, Argo Rollout, StatefulSet per pod); kinds
whose pods would each restore and replicate (Jobs, DaemonSets) are passed through with a note.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from supervisor.admission.inject import INJECT_LABEL, Defaults, inject

# Kinds whose pod template `inject -f` patches, and the workload their pods share: the object's own
# final name, or for a StatefulSet each pod's own ($(POD_NAME), expanded by the kubelet from the
# POD_NAME defined before it).
TEMPLATE_KINDS = {"Deployment": "name", "ReplicaSet": "name", "Rollout": "name", "StatefulSet": "$(POD_NAME)"}
PASSED_KINDS = {"Job": "a Job's pods run to completion and would each restore and replicate one database",
                "CronJob": "a CronJob's pods run to completion and would each restore and replicate one database",
                "DaemonSet": "one pod per node would be one writer per node on one replica"}


def inject_documents(docs: list[Any], defaults: Defaults) -> tuple[list[Any], list[str]]:
    """`inject -f`: pods and pod templates that opted in get the patch; everything else unchanged."""
    import jsonpatch  # only `inject` and the webhook's tests apply patches

    out, notes = [], []
    for doc in docs:
        if not isinstance(doc, dict):
            out.append(doc)
            continue
        kind, name = doc.get("kind"), (doc.get("metadata") or {}).get("name", "?")
        namespace = (doc.get("metadata") or {}).get("namespace")
        if kind == "Pod":
            injection = inject(doc, defaults, namespace)
            doc = jsonpatch.apply_patch(doc, injection.patch) if injection.patch else doc
        elif kind in TEMPLATE_KINDS:
            template = doc.get("spec", {}).get("template") or {}
            workload = TEMPLATE_KINDS[kind] if TEMPLATE_KINDS[kind] != "name" else \
                (doc.get("metadata") or {}).get("name")
            injection = inject(template, defaults, namespace, template_workload=workload)
            if injection.patch:
                doc = {**doc, "spec": {**doc["spec"], "template": jsonpatch.apply_patch(template, injection.patch)}}
                notes += [f"{kind}/{name}: warning: {w}" for w in workload_warnings(kind, doc["spec"])]
        elif kind in PASSED_KINDS:
            template = (doc.get("spec") or {}).get("template") or \
                ((doc.get("spec") or {}).get("jobTemplate") or {}).get("spec", {}).get("template") or {}
            if ((template.get("metadata") or {}).get("labels") or {}).get(INJECT_LABEL) == "true":
                notes.append(f"{kind}/{name}: not injected: {PASSED_KINDS[kind]}")
            out.append(doc)
            continue
        else:
            out.append(doc)
            continue
        if injection.patch:
            notes.append(f"{kind}/{name}: added {', '.join(injection.summary['containers'])}; volumes "
                         f"{', '.join(injection.summary['volumes'])}; db {injection.summary['db']} on volume "
                         f"{injection.summary['data_volume']}")
            notes += [f"{kind}/{name}: warning: {w}" for w in injection.warnings]
        out.append(doc)
    return out, notes


def workload_warnings(kind: str, spec: Mapping[str, Any]) -> list[str]:
    """Soft rules only a workload shows (a pod at admission does not: the ValidatingAdmissionPolicy
    checks them where workloads are written)."""
    out = []
    replicas = spec.get("replicas", 1)
    if replicas > 1:
        out.append(f"replicas {replicas} > 1: " + ("each pod replicates a database of its own" if kind == "StatefulSet"
                                                  else "one writer at a time: the others wait for the lease"))
    if kind == "Deployment" and (spec.get("strategy") or {}).get("type") != "Recreate":
        out.append("strategy is not Recreate: a rollout runs two pods on one replica (the lease makes the new one "
                   "wait for the old one's final upload)")
    return out
