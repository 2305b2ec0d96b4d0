"""Whose replica is this: the workload is known exactly or not at all (issue 25, part 1).

Pod names below are made the way the API server makes them: a ReplicaSet `<deployment>-<hash>`
creates pods with generateName `<replicaset>-`, cut to 58 characters, plus 5 random characters from
`bcdfghjklmnpqrstvwxz2456789` (k8s.io/apiserver/pkg/storage/names.SimpleNameGenerator,
k8s.io/apimachinery/pkg/util/rand.String). On the code before this issue, every Deployment name of
47 characters or more gave a "workload" with part of the hash or the random suffix in it.
"""

from __future__ import annotations

import random
import string
from pathlib import Path

import pytest

from supervisor.core import workload as workloads
from supervisor.core.errors import ConfigError
from supervisor.core.settings import build
from supervisor.core.workload import default_replica_path, workload_name

HASH = "7d4b9c8f6d"  # pod-template-hash values are up to 10 characters


def deployment_name(length: int, rng: random.Random) -> str:
    head = "".join(rng.choice(string.ascii_lowercase) for _ in range(length - 4))
    return f"{head}-api"[:length]


def pod_of(replicaset: str, rng: random.Random) -> str:
    suffix = "".join(rng.choice(workloads.RANDOM_ALPHABET) for _ in range(5))
    return workloads.generated_name(f"{replicaset}-", suffix)


@pytest.mark.parametrize("length", range(40, 64))
def test_a_deployments_pods_name_it_exactly_or_not_at_all(length: int) -> None:
    rng = random.Random(length)
    name = deployment_name(length, rng)
    pods = {pod_of(f"{name}-{HASH}", rng) for _ in range(20)}
    assert all(len(p) <= workloads.MAX_NAME_LENGTH for p in pods)
    derived = {workload_name({"POD_NAME": p, "POD_TEMPLATE_HASH": HASH}) for p in pods}
    if len(f"{name}-{HASH}-") <= workloads.MAX_GENERATED_BASE:
        assert derived == {name}  # every replacement pod: the same replica
    else:
        assert derived == {None}  # cut: never a name holding part of the hash or the suffix


@pytest.mark.parametrize("length", range(40, 64))
def test_an_explicit_workload_wins_for_every_length(length: int) -> None:
    rng = random.Random(length)
    name = deployment_name(length, rng)
    env = {"POD_NAME": pod_of(f"{name}-{HASH}", rng), "POD_TEMPLATE_HASH": HASH,
           "POD_NAMESPACE": "shop", "POD_SERVICE_ACCOUNT": "orders"}
    path = default_replica_path(env, Path("/data/app.db"), name)
    assert path == f"system:serviceaccount:shop:orders/{name}/app.db"


@pytest.mark.parametrize(("env", "expected"), [
    ({"POD_NAME": "web-7d4b9c8f6d-x2x9q", "POD_TEMPLATE_HASH": "7d4b9c8f6d"}, "web"),  # Deployment
    ({"POD_NAME": "my-app-api-5f6c7-b2n4z", "POD_TEMPLATE_HASH": "5f6c7"}, "my-app-api"),
    ({"POD_NAME": "db-2"}, "db-2"),  # StatefulSet: each ordinal its own database
    ({"POD_NAME": "db-12"}, "db-12"),
    ({"POD_NAME": "orders-0", "POD_TEMPLATE_HASH": ""}, "orders-0"),  # the label is absent: empty env value
    ({"POD_NAME": "migration"}, "migration"),  # a pod with a fixed name
    ({"POD_NAME": "shop-orders-x2x9q"}, None),  # a bare ReplicaSet's pod: no hash label, a random suffix
    ({"POD_NAME": "checkout-6b8f9d-x2x9q"}, None),  # an Argo Rollout's: rollouts-pod-template-hash only
    ({"POD_NAME": "web-7d4b9c8f6d-x2x9q", "POD_TEMPLATE_HASH": "other"}, None),
    ({"POD_NAME": "web-7d4b9c8f-x2x9q", "POD_TEMPLATE_HASH": "7d4b9c8f6d"}, None),  # hash cut short
    ({}, None),
])
def test_workload_from_the_downward_api(env: dict[str, str], expected: str | None) -> None:
    assert workload_name(env) == expected


def test_an_unknown_workload_is_an_error_naming_what_to_set() -> None:
    env = {"POD_NAME": "shop-orders-x2x9q", "POD_NAMESPACE": "shop", "POD_SERVICE_ACCOUNT": "orders"}
    with pytest.raises(ConfigError) as e:
        build({"db": "/data/app.db", "bucket": "litestream"}, env=env)
    message = str(e.value)
    assert "LITESTREAM_SUPERVISOR_WORKLOAD" in message and "--replica-path" in message and "\n" not in message
    assert "x2x9q/" not in message  # no path with the suffix in it was made
    ok = build({"db": "/data/app.db", "bucket": "litestream", "workload": "shop-orders"}, env=env)
    assert ok.one_db is not None and ok.one_db.replica_path == "system:serviceaccount:shop:orders/shop-orders/app.db"
    assert ok.workload == "shop-orders"


@pytest.mark.parametrize("bad", ["Shop", "a/b", "-x", "x-", "a" * 254, "a b"])
def test_a_workload_that_is_not_an_object_name_is_refused(bad: str) -> None:
    with pytest.raises(ConfigError) as e:
        build({"workload": bad}, env={})
    assert "--workload" in str(e.value)


def test_the_replica_path_never_holds_a_random_suffix_whatever_the_name() -> None:
    """The invariant, over many generated names: a derived path is the same for every pod of a
    workload (or there is none)."""
    rng = random.Random(25)
    for _ in range(500):
        name = deployment_name(rng.randint(3, 60), rng).strip("-") or "x"
        template_hash = "".join(rng.choice(workloads.RANDOM_ALPHABET) for _ in range(rng.randint(6, 10)))
        paths = set()
        for _ in range(3):
            env = {"POD_NAME": pod_of(f"{name}-{template_hash}", rng), "POD_TEMPLATE_HASH": template_hash,
                   "POD_NAMESPACE": "ns", "POD_SERVICE_ACCOUNT": "sa"}
            try:
                paths.add(default_replica_path(env, Path("/d/app.db")))
            except ConfigError:
                paths.add(None)
        assert paths in ({f"system:serviceaccount:ns:sa/{name}/app.db"}, {None}), (name, paths)
