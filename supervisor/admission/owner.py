"""Which workload a pod belongs to, read at admission from its owner reference and labels.

The runtime names a replica `system:serviceaccount:<ns>:<sa>/<workload>/<db>` and its lease after
the workload, and every pod of one workload must arrive at the same name. At admission the pod
says it exactly, where its own name cannot (supervisor/core/workload.py: a cut `generateName` base, no
hash label): its controller's `ownerReferences` entry names the ReplicaSet or StatefulSet, and a
ReplicaSet of a Deployment (or an Argo Rollout) is `<owner>-<pod-template-hash>`, the hash being
the pod's own label. Pure: no API lookups in the admission path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# ReplicaSet label -> the kind whose controller adds it (and names its ReplicaSets <name>-<hash>).
HASH_LABELS = (("pod-template-hash", "Deployment"), ("rollouts-pod-template-hash", "Rollout"))


@dataclass(frozen=True)
class Owner:
    """The workload's exact name (None when the pod does not say it), and how it was found or why not."""

    workload: str | None
    how: str


def controller(meta: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


def of_pod(meta: Mapping[str, Any]) -> Owner:
    """The workload of a pod as the API server admits it (owner reference, labels, name)."""
    labels = meta.get("labels") or {}
    ref = controller(meta)
    if ref is not None:
        kind, name = str(ref.get("kind")), str(ref.get("name") or "")
        if kind == "ReplicaSet":
            for label, whose in HASH_LABELS:
                if label in labels:
                    suffix = "-" + str(labels[label])
                    if name.endswith(suffix) and len(name) > len(suffix):
                        return Owner(name[: -len(suffix)], f"{whose} of ReplicaSet {name}")
                    return Owner(None, f"ReplicaSet {name} does not end in its pods' {label} {labels[label]!r}")
            return Owner(name or None, f"ReplicaSet {name} (no template hash: not a Deployment's)")
        if kind == "StatefulSet":
            # Each ordinal is its own database; the controller sets the pod's final name itself.
            pod = meta.get("name") or labels.get("statefulset.kubernetes.io/pod-name")
            return Owner(pod, f"StatefulSet {name} pod") if pod else \
                Owner(None, f"a pod of StatefulSet {name} without its name")
        return Owner(None, f"a pod controlled by {kind} {name} (not a workload whose pods share one database)")
    if meta.get("name") and not meta.get("generateName"):
        return Owner(str(meta["name"]), "the pod's fixed name")
    return Owner(None, "a pod with a generated name and no controller")
