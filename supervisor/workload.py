"""Which workload a pod belongs to, known exactly or not at all.

The workload names the replica (`system:serviceaccount:<ns>:<sa>/<workload>/<db>`) and the lease:
every pod of one Deployment must arrive at the same name, and no two workloads at one. A pod's
own name is not enough: the API server cuts a `generateName` base to 58 characters and appends 5
random ones, so a long Deployment name loses part of its pod-template-hash from its pods' names,
and pods of bare ReplicaSets or Argo Rollouts carry no `pod-template-hash` label at all. A name
with a random suffix in it would give every replacement pod a replica of its own: it restores
nothing and starts empty beside its predecessor's replica.

So the name comes from `--workload` (the webhook and the Component set it from the pod's owner),
and otherwise is derived only where the pod's name proves it exactly.
"""

from __future__ import annotations

import re

# Kubernetes' generated-name rules (apiserver names.SimpleNameGenerator, utilrand.String).
MAX_NAME_LENGTH = 63
RANDOM_LENGTH = 5
MAX_GENERATED_BASE = MAX_NAME_LENGTH - RANDOM_LENGTH  # 58
RANDOM_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # no vowels, no 0, 1, 3
_RANDOM_SUFFIX = re.compile(f"-[{RANDOM_ALPHABET}]{{{RANDOM_LENGTH}}}$")
_RANDOM_TAIL = re.compile(f"[{RANDOM_ALPHABET}]{{{RANDOM_LENGTH}}}$")


def generated_name(generate_name: str, suffix: str) -> str:
    """The name the API server gives an object created with `generateName` (for tests and docs)."""
    return generate_name[:MAX_GENERATED_BASE] + suffix


def from_template_hash(pod: str, template_hash: str) -> str | None:
    """`<deployment>-<hash>-<5 random>` (a ReplicaSet `<deployment>-<hash>` generated the pod): the
    Deployment's name, only when the whole hash and a whole random suffix are there."""
    if not template_hash:
        return None
    m = re.fullmatch(rf"(?P<name>.+)-{re.escape(template_hash)}-[{RANDOM_ALPHABET}]{{{RANDOM_LENGTH}}}", pod)
    return m["name"] if m else None


def could_be_generated(pod: str) -> bool:
    """True when the name may end in a random suffix (then it names one pod, not a workload).
    A base longer than 58 characters loses its trailing dash to the cut: a 63-character name
    ending in 5 characters of the alphabet may be `<58 characters><5 random>`, no dash between."""
    if _RANDOM_SUFFIX.search(pod):
        return True
    return len(pod) == MAX_NAME_LENGTH and bool(_RANDOM_TAIL.search(pod))


def derive(pod: str | None, template_hash: str | None) -> str | None:
    """The workload from the downward API, or None when it cannot be known exactly.

    A Deployment's pod: its name minus `-<hash>-<suffix>`, when both are whole. A pod whose name
    cannot have been generated (a StatefulSet's `<name>-<ordinal>`, a pod with a fixed name): that
    name, each its own workload. Anything else may carry a random suffix: unknown."""
    if not pod:
        return None
    if template_hash:
        return from_template_hash(pod, template_hash)
    return None if could_be_generated(pod) else pod
