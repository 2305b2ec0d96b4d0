"""The optional NetworkPolicy Component (issue 28, item 10), evaluated with NetworkPolicy's own
semantics (tests/k8s_rules.traffic_allowed, from the networking.k8s.io/v1 reference).

Sources: Kubernetes docs "Network Policies" (isolation per pod and direction, rules add up; a
NetworkPolicy cannot select containers); NodeLocal DNSCache listens on the link-local
169.254.20.10 on each node with hostNetwork (kubernetes cluster/addons/dns/nodelocaldns README;
restatedev/restate-operator#88, tektoncd/operator#4001 fixed the same egress rule); OpenShift's DNS
pods run in openshift-dns and listen on 5353 behind the Service's 53 (policies see the target port:
e.g. HPE CSI driver's OpenShift NetworkPolicy example).
"""

from __future__ import annotations

import functools
from typing import Any

import pytest

from tests.k8s_rules import traffic_allowed
from tests.unit.test_manifests import MANIFESTS, WORKLOADS, kustomize

NS = "notes"
DEFAULT_DENY = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": "default-deny", "namespace": NS},
                "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}}


@functools.cache
def render() -> list[dict[str, Any]]:
    return kustomize(WORKLOADS / "apps" / "deploy-pvc-netpol")


def app_pod() -> dict[str, Any]:
    (w,) = [d for d in render() if d["kind"] == "Deployment"]
    return {"namespace": NS, "labels": w["spec"]["template"]["metadata"]["labels"]}


def ours() -> list[dict[str, Any]]:
    return [d for d in render() if d["kind"] == "NetworkPolicy"]


def ns(name: str) -> dict[str, Any]:
    return {"namespace": name, "ns_labels": {"kubernetes.io/metadata.name": name}}


NEEDS = [  # what the litestream containers reach (egress) or are reached on (ingress)
    ("egress", {**ns("minio"), "labels": {"app": "minio"}}, 9000, "TCP"),  # S3 and STS
    ("egress", {**ns("kube-system"), "labels": {"k8s-app": "kube-dns"}}, 53, "UDP"),
    ("egress", {**ns("kube-system"), "labels": {"k8s-app": "kube-dns"}}, 53, "TCP"),
    ("egress", {"ip": "169.254.20.10"}, 53, "UDP"),  # NodeLocal DNSCache
    # NodeLocal DNSCache in kube-proxy iptables mode also binds the kube-dns ClusterIP on the host
    # network (NOTRACK: no DNAT to a CoreDNS pod), so the query's destination is that ClusterIP, which
    # no namespace or pod selector matches (kubernetes/kubernetes#70555: policies broke this way)
    ("egress", {"ip": "10.96.0.10"}, 53, "UDP"),
    ("egress", {"ip": "10.96.0.10"}, 53, "TCP"),
    ("egress", {**ns("openshift-dns"), "labels": {"dns.operator.openshift.io/daemonset-dns": "default"}}, 5353, "UDP"),
    ("ingress", {"ip": "10.0.0.5"}, 9091, "TCP"),  # kubelet probes and Prometheus
]


@pytest.mark.parametrize(("direction", "peer", "port", "protocol"), NEEDS)
def test_in_a_default_deny_namespace_our_containers_get_what_they_need(direction: str, peer: dict[str, Any],
                                                                      port: int, protocol: str) -> None:
    assert not traffic_allowed([DEFAULT_DENY], direction, app_pod(), peer, port, protocol)  # denied by default
    assert traffic_allowed([DEFAULT_DENY, *ours()], direction, app_pod(), peer, port, protocol)


def test_it_opens_nothing_else() -> None:
    pod, policies = app_pod(), [DEFAULT_DENY, *ours()]
    assert not traffic_allowed(policies, "egress", pod, {"ip": "203.0.113.7"}, 443)
    assert not traffic_allowed(policies, "egress", pod, {"ip": "203.0.113.7"}, 5353, "UDP")  # 5353: OpenShift's only
    assert not traffic_allowed(policies, "egress", pod, {**ns("minio")}, 9001)
    assert not traffic_allowed(policies, "ingress", pod, {"ip": "10.0.0.5"}, 8080)


def test_in_a_namespace_without_policies_it_would_cut_the_apps_own_traffic() -> None:
    """Why it is for default-deny namespaces only, and said so plainly: alone, it isolates the pod."""
    pod = app_pod()
    database, users = ({"ip": "10.1.2.3"}, 5432), ({"ip": "10.0.7.9"}, 8080)
    assert traffic_allowed([], "egress", pod, *database) and traffic_allowed([], "ingress", pod, *users)
    assert not traffic_allowed(ours(), "egress", pod, *database)
    assert not traffic_allowed(ours(), "ingress", pod, *users)
    text = (MANIFESTS / "components/litestream-networkpolicy/kustomization.yaml").read_text()
    assert "ONLY for namespaces that already deny by default" in text


def test_it_selects_the_label_both_delivery_paths_add() -> None:
    (policy,) = ours()
    selector = policy["spec"]["podSelector"]["matchLabels"]
    assert selector == {"litestream-supervisor.io/replicated": "true"}
    from supervisor.admission.inject import REPLICATED_LABEL
    assert REPLICATED_LABEL in selector
