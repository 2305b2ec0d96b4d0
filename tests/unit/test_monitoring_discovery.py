"""Monitoring objects are found by kube-prometheus-stack with its defaults (issue 28, item 12).

Sources: the kube-prometheus-stack chart's values (prometheus.prometheusSpec.
podMonitorSelectorNilUsesHelmValues and ruleSelectorNilUsesHelmValues default true: the Prometheus
then selects `release: <Helm release name>`, in every namespace: podMonitorNamespaceSelector and
ruleNamespaceSelector {}; e.g. gitlab data-insights-platform-infra!58 shows the rendered
`{"matchLabels":{"release":"kube-prometheus-stack"}}`); the grafana chart's dashboard sidecar
(label grafana_dashboard "1", searchNamespace unset: Grafana's own namespace only).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from tests.k8s_rules import labels_match
from tests.unit.test_manifests import MANIFESTS, kustomize


def kube_prometheus_stack_defaults(release: str) -> dict[str, Any]:
    """The Prometheus custom resource's selectors as the chart renders them by default."""
    selector = {"matchLabels": {"release": release}}
    return {"podMonitorSelector": selector, "podMonitorNamespaceSelector": {},
            "ruleSelector": selector, "ruleNamespaceSelector": {}}


def discovered(docs: list[dict[str, Any]], release: str, grafana_namespace: str) -> set[str]:
    spec = kube_prometheus_stack_defaults(release)
    found = set()
    for d in docs:
        labels = d["metadata"].get("labels", {})
        if d["kind"] == "PodMonitor" and labels_match(spec["podMonitorSelector"], labels):
            found.add("PodMonitor")
        if d["kind"] == "PrometheusRule" and labels_match(spec["ruleSelector"], labels):
            found.add("PrometheusRule")
        if d["kind"] == "ConfigMap" and labels.get("grafana_dashboard") == "1" and \
                d["metadata"].get("namespace") == grafana_namespace:
            found.add("dashboard")
    return found


def test_found_by_a_default_kube_prometheus_stack_release() -> None:
    docs = kustomize("monitoring")
    assert discovered(docs, "kube-prometheus-stack", "monitoring") == {"PodMonitor", "PrometheusRule", "dashboard"}
    (monitor,) = [d for d in docs if d["kind"] == "PodMonitor"]
    assert monitor["spec"]["selector"] == {} and monitor["spec"]["namespaceSelector"] == {"any": True}


def test_another_release_name_and_grafana_namespace_from_an_overlay(tmp_path: Path) -> None:
    """The README's overlay, as written there."""
    readme = (MANIFESTS.parent / "README.md").read_text()
    block = readme.split("# monitoring/kustomization.yaml", 1)[1].split("```", 1)[0]
    overlay = yaml.safe_load(block)
    root = tmp_path / "monitoring"
    root.mkdir()
    overlay["resources"] = [os.path.relpath(MANIFESTS / "monitoring", root)]
    (root / "kustomization.yaml").write_text(yaml.safe_dump(overlay))
    docs = kustomize(root)
    release, namespace = overlay["labels"][0]["pairs"]["release"], overlay["namespace"]
    assert discovered(docs, release, namespace) == {"PodMonitor", "PrometheusRule", "dashboard"}
    assert discovered(docs, "kube-prometheus-stack", "monitoring") == set()
