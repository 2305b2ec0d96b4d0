"""Workload derivation when the API server's cut takes the dash before the random suffix.

The API server cuts a generateName base to 58 characters *before* appending the 5 random
characters. When the base (`<replicaset>-`) is longer than 58, the cut removes the trailing dash:
the pod name is `<first 58 characters><5 random>`, with no dash in front of the random part.
`could_be_generated` only looks for `-[alphabet]{5}$`, so such a name is taken as a fixed pod name
and becomes the workload, random suffix included: every replacement pod names a replica (and a
lease) of its own, restores nothing, and starts empty beside its predecessor's replica.

Reachable without POD_TEMPLATE_HASH: a bare ReplicaSet's pods, an Argo Rollout's pods (label
`rollouts-pod-template-hash` only), a Deployment whose pod spec does not map the label.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from supervisor.core import workload as workloads
from supervisor.core.errors import ConfigError
from supervisor.core.workload import default_replica_path, workload_name


def _pods(generate_name: str, n: int, rng: random.Random) -> list[str]:
    return [workloads.generated_name(generate_name, "".join(rng.choice(workloads.RANDOM_ALPHABET) for _ in range(5)))
            for _ in range(n)]


@pytest.mark.parametrize("replicaset_length", range(50, 64))
@pytest.mark.parametrize("template_hash_env", [None, ""])
def test_pods_without_a_hash_label_never_name_a_workload_holding_their_random_suffix(
        replicaset_length: int, template_hash_env: str | None) -> None:
    """Invariant: every pod of one ReplicaSet derives the same workload, or none (exit 2)."""
    rng = random.Random(replicaset_length)
    replicaset = ("shop-orders-api-" + "x" * 80)[:replicaset_length - 11] + "-6b8f9d7c5f"
    assert len(replicaset) == replicaset_length
    env_extra = {} if template_hash_env is None else {"POD_TEMPLATE_HASH": template_hash_env}
    derived = {workload_name({"POD_NAME": pod, **env_extra}) for pod in _pods(f"{replicaset}-", 20, rng)}
    assert len(derived) == 1, (f"{len(derived)} different workloads for one ReplicaSet's pods "
                               f"(each a replica of its own), e.g. {sorted(map(str, derived))[:2]}")


def test_a_long_bare_replicaset_gives_each_replacement_pod_its_own_replica() -> None:
    """The consequence, as a path: two pods of one ReplicaSet, two replicas."""
    replicaset = "payments-ledger-reconciliation-worker-eu-west-1-6b8f9d7c5f"  # 58 characters
    assert len(replicaset) == 58
    paths = set()
    for suffix in ("x2x9q", "b7k4z"):
        pod = workloads.generated_name(f"{replicaset}-", suffix)
        env = {"POD_NAME": pod, "POD_NAMESPACE": "shop", "POD_SERVICE_ACCOUNT": "orders"}
        try:
            paths.add(default_replica_path(env, Path("/data/app.db")))
        except ConfigError:
            paths.add(None)
    assert len(paths) == 1, f"replacement pods write different replicas: {sorted(map(str, paths))}"
