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
import socket
from collections.abc import Mapping
from pathlib import Path

from supervisor.core.errors import ConfigError

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


# A Kubernetes object name (RFC 1123 subdomain): what a workload, and so a replica path segment, is.
WORKLOAD_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


def first_set(env: Mapping[str, str], *names: str) -> str | None:
    """The first of these variables set to something other than blanks (as an AWS SDK reads them)."""
    for name in names:
        value = env.get(name, "").strip()
        if value:
            return value
    return None


def default_session_name(env: Mapping[str, str]) -> str:
    # AWS and Ceph require a RoleSessionName of 2-64 characters [\w+=,.@-]; MinIO ignores it.
    name = first_set(env, "POD_NAME", "HOSTNAME") or socket.gethostname() or "litestream-supervisor"
    cleaned = "".join(c if c.isalnum() or c in "+=,.@-_" else "-" for c in name)[:64]
    return cleaned if len(cleaned) >= 2 else "litestream-supervisor"


def workload_name(env: Mapping[str, str], explicit: str | None = None) -> str | None:
    """The workload this pod belongs to: --workload / LITESTREAM_SUPERVISOR_WORKLOAD (the webhook and
    the Component set it from the pod's owner), else only what the downward API proves exactly
    (supervisor/core/workload.py): never a name that may hold a pod's random suffix."""
    if explicit:
        return explicit
    return derive(first_set(env, "POD_NAME"), first_set(env, "POD_TEMPLATE_HASH"))


def workload_option(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not WORKLOAD_NAME.fullmatch(value):
        raise ConfigError(f"--workload / LITESTREAM_SUPERVISOR_WORKLOAD: expected a Kubernetes object name "
                          f"(lowercase letters, digits, '-' and '.', at most 253), got {value!r}")
    return value


def default_replica_path(env: Mapping[str, str], db: Path, workload: str | None = None) -> str:
    """system:serviceaccount:<ns>:<sa>/<workload>/<db file>: the service account's own prefix (what a
    MinIO policy scoped by ${jwt:sub} allows), then the workload, so a shared or default service
    account, or a StatefulSet above 1 replica, never shares a replica."""
    ns, sa = first_set(env, "POD_NAMESPACE"), first_set(env, "POD_SERVICE_ACCOUNT")
    if not (ns and sa):
        raise ConfigError("--replica-path: not set, and POD_NAMESPACE and POD_SERVICE_ACCOUNT (downward API) are "
                          "not both there to derive system:serviceaccount:<ns>:<sa>/<workload>/<db>")
    name = workload_name(env, workload)
    if not name:
        pod = first_set(env, "POD_NAME")
        why = (f"pod {pod!r} may end in a random suffix (its name cannot tell its Deployment, ReplicaSet or "
               "Rollout exactly)" if pod else "POD_NAME is not set")
        raise ConfigError(f"--workload / LITESTREAM_SUPERVISOR_WORKLOAD: not set, and {why}; set it to the "
                          "workload's name (the webhook and the Component do), or set --replica-path")
    return f"system:serviceaccount:{ns}:{sa}/{name}/{db.name}"
