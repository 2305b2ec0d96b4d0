"""A CPU limit for namespaces whose ResourceQuota demands one (issue 28, item 13): the webhook and
`inject` (--cpu-limit, annotation litestream-supervisor.io/cpu-limit) and the Component
(components/litestream-cpu-limit). Source: Kubernetes docs "Resource Quotas" (with a quota on
limits.cpu, a pod whose containers set no CPU limit is rejected unless a LimitRange supplies one)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import jsonpatch
import pytest
import yaml

from supervisor.admission.inject import Defaults, Refused, inject
from tests.k8s_rules import quota_problems
from tests.unit.test_manifests import MANIFESTS, kustomize

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "admission"
OURS = {"litestream-restore", "litestream"}
DEFAULTS = Defaults(bucket="litestream", endpoint="http://minio.minio.svc:9000")


def injected(defaults: Defaults, **annotations: str) -> dict:
    pod = json.loads((FIXTURES / "deployment-own-data-volume.pod.json").read_text())
    pod["metadata"]["annotations"].update({f"litestream-supervisor.io/{k}": v for k, v in annotations.items()})
    return jsonpatch.apply_patch(copy.deepcopy(pod), inject(pod, defaults, "shop").patch)["spec"]


def test_webhook_and_inject_set_it_when_asked() -> None:
    assert quota_problems(injected(DEFAULTS), {"limits.cpu"}, OURS)  # none by default
    spec = injected(Defaults(**{**DEFAULTS.__dict__, "cpu_limit": "500m"}))
    assert quota_problems(spec, {"limits.cpu", "limits.memory", "requests.cpu", "requests.memory"}, OURS) == []
    assert {c["resources"]["limits"]["cpu"] for c in spec["initContainers"]} == {"500m"}
    spec = injected(DEFAULTS, **{"cpu-limit": "1"})
    assert {c["resources"]["limits"]["cpu"] for c in spec["initContainers"]} == {"1"}
    with pytest.raises(Refused, match="cpu-limit: expected a CPU quantity"):
        injected(DEFAULTS, **{"cpu-limit": "lots"})


def test_the_flag_is_checked_once_at_start() -> None:
    pod = str(FIXTURES / "legacy-sidecar.pod.json")
    args = ["inject", "-f", pod, "--bucket", "b", "--cpu-limit", "5x"]
    out = subprocess.run([sys.executable, "-m", "supervisor", *args],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 2 and "--cpu-limit" in out.stderr and len(out.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("app", ["sts-claims", "deploy-pvc"])
def test_the_component_option(tmp_path: Path, app: str) -> None:
    src = MANIFESTS.parent / "tests" / "workloads" / "apps" / app
    root = tmp_path / app
    root.mkdir()
    (root / "app.yaml").write_text((src / "app.yaml").read_text())
    k = yaml.safe_load((src / "kustomization.yaml").read_text())
    k["components"] = [os.path.relpath(MANIFESTS / "components" / c, root)
                       for c in ("litestream", "litestream-workload-name", "litestream-cpu-limit")]
    (root / "kustomization.yaml").write_text(yaml.safe_dump(k))
    for with_limit in (True, False):
        if not with_limit:
            k["components"] = k["components"][:2]
            (root / "kustomization.yaml").write_text(yaml.safe_dump(k))
        (w,) = [d for d in kustomize(root) if d["kind"] in ("Deployment", "StatefulSet")]
        pod = w["spec"]["template"]["spec"]
        assert bool(quota_problems(pod, {"limits.cpu"}, OURS)) != with_limit
        names = [c["name"] for c in pod["initContainers"]]
        assert names.count("litestream") == 1 and names.count("litestream-restore") == 1
