"""The verify CronJob (issue 27, manifests/components/litestream-verify): one per app, what the API
server enforces, hardened like the Component's containers, no identity derived from its own pod, and
an environment that resolves, through settings.build and config.load_for as `verify` runs them, the
very replica its app's sidecars write; its Jobs' names are the ones the alert selects."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml

from supervisor.commands.cli import cli
from supervisor.commands.verify import VERIFY_CODES
from supervisor.core import settings
from supervisor.core.errors import ExitCode
from supervisor.identity import scope
from supervisor.litestream import config as lsconfig
from tests.k8s_rules import CRONJOB_NAME_MAX, cronjob_problems
from tests.unit.test_component_workload import COMPONENT, WORKLOAD_NAME, app_dir
from tests.unit.test_manifests import MANIFESTS, kustomize, resolve_env

VERIFY = MANIFESTS / "components" / "litestream-verify"
VERIFY_STATEFULSET = MANIFESTS / "components" / "litestream-verify-statefulset"
EXAMPLES = ["examples/app-component", "examples/app-base"]  # a Deployment, a StatefulSet
sys.path.insert(0, str(MANIFESTS / "monitoring"))
import generate as monitoring  # noqa: E402


def cronjob(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == "CronJob"]
    return found


def configmaps(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}


def resolved(container: dict[str, Any], docs: list[dict[str, Any]], pod: dict[str, Any], ns: str, pod_name: str,
             template_hash: str | None) -> tuple[settings.Settings, lsconfig.LitestreamConfig]:
    """The container's command line and environment (as the kubelet builds it) parsed by click, then
    settings.build and config.load_for: what the command itself resolves before touching the network."""
    env = resolve_env(container, configmaps(docs), pod, ns, pod_name, template_hash)
    command = cli.commands[container["args"][0]]
    with mock.patch.dict(os.environ, env, clear=True):  # click reads LITESTREAM_SUPERVISOR_* from here
        options = dict(command.make_context(command.name, list(container["args"][1:])).params)
    options["exec_command"] = ()  # replicate's --exec, split by the CLI
    built = settings.build(options, env)
    return built, lsconfig.load_for(built)


def app_and_verify(docs: list[dict[str, Any]]) -> tuple[tuple[Any, Any], tuple[Any, Any]]:
    """(settings, config) of the app's sidecar in its pod 0 and of the CronJob's container in a Job's pod."""
    (w,) = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")]
    ns = w["metadata"]["namespace"]
    pod = w["spec"]["template"]["spec"]
    deployment = w["kind"] == "Deployment"
    pod_name = f"{w['metadata']['name']}-7d4b9c8f6d-x2x9q" if deployment else f"{w['metadata']['name']}-0"
    (sidecar,) = [c for c in pod["initContainers"] if c["name"] == "litestream"]
    app = resolved(sidecar, docs, pod, ns, pod_name, "7d4b9c8f6d" if deployment else None)
    cj = cronjob(docs)
    job_pod = cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = job_pod["containers"]
    verify = resolved(container, docs, job_pod, cj["metadata"]["namespace"], f"{cj['metadata']['name']}-29001440-k2x7q",
                      None)
    return app, verify


def replica(config: lsconfig.LitestreamConfig) -> tuple[str, str, str | None, str, bool, str]:
    (db,) = config.databases
    return db.replica.bucket, db.replica.path, db.replica.endpoint, db.replica.region, db.replica.force_path_style, \
        db.path.name


def overlays(tmp_path: Path) -> dict[str, Path]:
    """Apps of our own tests' shape: a Deployment and a StatefulSet, renamed above by overlays."""
    deployment = app_dir(tmp_path / "orders", "orders", extra="namePrefix: a-\n",
                         components=(COMPONENT, WORKLOAD_NAME, VERIFY))
    statefulset = app_dir(tmp_path / "ledger", "ledger", kind="StatefulSet", extra="nameSuffix: -b\n",
                          components=(COMPONENT, WORKLOAD_NAME, VERIFY, VERIFY_STATEFULSET))
    out = {}
    for name, app in (("deployment-overlay", deployment), ("statefulset-overlay", statefulset)):
        overlay = tmp_path / name
        overlay.mkdir()
        (overlay / "kustomization.yaml").write_text(f"resources: [../{app.name}]\nnamePrefix: team-\n")
        out[name] = overlay
    return out


@pytest.mark.parametrize("path", [*EXAMPLES, "deployment-overlay", "statefulset-overlay"])
def test_the_cronjob_verifies_the_very_replica_its_app_writes(tmp_path: Path, path: str) -> None:
    docs = kustomize(overlays(tmp_path).get(path, path))
    (app_settings, app_config), (verify_settings, verify_config) = app_and_verify(docs)
    assert replica(verify_config) == replica(app_config)
    (w,) = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")]
    name = w["metadata"]["name"]
    assert replica(app_config)[1].split("/")[1] == (name if w["kind"] == "Deployment" else f"{name}-0")
    assert verify_settings.workload == app_settings.workload
    for field in ("role_arn", "token_file", "sts_endpoint", "s3_endpoint", "region", "audience"):
        assert getattr(verify_settings.aws, field) == getattr(app_settings.aws, field), field
    # read-only credentials (verify asks for them), scoped to exactly that replica
    policy = json.loads(scope.session_policy(verify_config.databases, read_only=True) or "{}")
    bucket, path_in_bucket = replica(app_config)[:2]
    assert {a for s in policy["Statement"] for a in s["Action"]} == {"s3:ListBucket", "s3:GetObject"}
    assert [s["Resource"] for s in policy["Statement"] if "s3:GetObject" in s["Action"]] == \
        [[scope.object_arn(bucket, f"{path_in_bucket}/*")]]


def test_two_apps_in_one_namespace_get_a_cronjob_each(tmp_path: Path) -> None:
    """Applied one after the other into one namespace, neither replaces the other's CronJob."""
    seen = {}
    for app in ("orders", "users"):
        docs = kustomize(app_dir(tmp_path / app, app, components=(COMPONENT, WORKLOAD_NAME, VERIFY)))
        _, (_, verify_config) = app_and_verify(docs)
        seen[cronjob(docs)["metadata"]["name"]] = replica(verify_config)[1]
    assert seen == {"litestream-verify-orders": "system:serviceaccount:shop:app/orders/app.db",
                    "litestream-verify-users": "system:serviceaccount:shop:app/users/app.db"}


@pytest.mark.parametrize("path", EXAMPLES)
def test_the_cronjob_passes_what_the_api_server_enforces(path: str) -> None:
    docs = kustomize(path)
    cj = cronjob(docs)
    same_namespace = {n: d for n, d in configmaps(docs).items()
                      if d["metadata"].get("namespace") == cj["metadata"]["namespace"]}
    assert cronjob_problems(cj, same_namespace) == []


def test_the_api_server_rules_catch_what_they_claim() -> None:
    cj = cronjob(kustomize("examples/app-component"))
    broken = copy.deepcopy(cj)
    broken["metadata"]["name"] = "litestream-verify-" + "x" * 40
    broken["spec"]["timeZone"] = "Mars/Olympus_Mons"
    job = broken["spec"]["jobTemplate"]["spec"]
    job["template"]["spec"]["restartPolicy"] = "OnFailure"
    job["podFailurePolicy"]["rules"][0]["onExitCodes"].update(containerName="app", values=[20, 19, 0])
    problems = "\n".join(cronjob_problems(broken, configmaps(kustomize("examples/app-component"))))
    for expected in ("58 characters", "timeZone", "podFailurePolicy needs restartPolicy Never", "'app' is not in",
                     "0 with the In operator", "unique and ascending"):
        assert expected in problems, problems


def component_template() -> dict[str, Any]:
    return yaml.safe_load((MANIFESTS / "components" / "litestream" / "pod-template.yaml").read_text())


@pytest.mark.parametrize("path", EXAMPLES)
def test_the_cronjob_is_hardened_and_has_no_identity_of_its_own_pod(path: str) -> None:
    docs = kustomize(path)
    cj = cronjob(docs)
    spec, job = cj["spec"], cj["spec"]["jobTemplate"]["spec"]
    pod = job["template"]["spec"]
    (c,) = pod["containers"]
    (restore, _) = component_template()["spec"]["template"]["spec"]["initContainers"]
    # the Component's container hardening and resources; the Component's token, and no other
    assert c["securityContext"] == restore["securityContext"] and c["resources"] == restore["resources"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["automountServiceAccountToken"] is False
    volumes = {v["name"]: v for v in pod["volumes"]}
    (token,) = [v for v in component_template()["spec"]["template"]["spec"]["volumes"] if "projected" in v]
    assert volumes[token["name"]] == token
    (w,) = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")]
    assert pod["serviceAccountName"] == w["spec"]["template"]["spec"]["serviceAccountName"]
    # nothing derived from this pod: not its name, uid or template hash; no access to the app's volume
    env = {e["name"] for e in c["env"]}
    assert not env & {"POD_NAME", "POD_UID", "POD_TEMPLATE_HASH"} and "data" not in volumes
    args = c["args"]
    assert args[0] == "verify" and "--compare" not in args
    scratch = args[args.index("--scratch-dir") + 1]
    (mount,) = [m for m in c["volumeMounts"] if m["mountPath"] == scratch]
    assert volumes[mount["name"]]["emptyDir"]["sizeLimit"]
    # one at a time, bounded, failures kept for the alert, which looks at each CronJob's newest Job
    assert spec["concurrencyPolicy"] == "Forbid" and 0 <= job["backoffLimit"] <= 2
    assert job["activeDeadlineSeconds"] > float(args[args.index("--timeout") + 1])
    assert spec["successfulJobsHistoryLimit"] >= 1 and spec["failedJobsHistoryLimit"] >= 1
    assert "ttlSecondsAfterFinished" not in job
    # not retried: what a retry cannot change; retried: what may pass (S3 or STS away, a signal)
    (codes,) = [r["onExitCodes"]["values"] for r in job["podFailurePolicy"]["rules"] if "onExitCodes" in r]
    assert set(codes) <= {int(code) for code in VERIFY_CODES} | {ExitCode.LITESTREAM_MISSING}
    assert {ExitCode.VERIFY_UNRESTORABLE, ExitCode.VERIFY_INTEGRITY} <= set(codes)
    assert not {ExitCode.UNREACHABLE, ExitCode.INTERRUPTED, ExitCode.INTERNAL} & set(codes)


def test_the_readmes_patch_for_schedule_and_scratch_space(tmp_path: Path) -> None:
    readme = (MANIFESTS.parent / "README.md").read_text()
    block = readme.split("# my-app/kustomization.yaml: the verify CronJob's schedule and scratch space", 1)[1]
    overlay = yaml.safe_load(block.split("```", 1)[0])
    root = tmp_path / "my-app"
    root.mkdir()
    overlay["resources"] = [os.path.relpath(MANIFESTS / "examples" / "app-component", root)]
    (root / "kustomization.yaml").write_text(yaml.safe_dump(overlay))
    cj = cronjob(kustomize(root))
    pod = cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert cj["spec"]["schedule"] == "40 2 * * 0"
    assert {v["name"]: v for v in pod["volumes"]}["litestream-scratch"]["emptyDir"]["sizeLimit"] == "20Gi"


@pytest.mark.parametrize("with_limit", [True, False])
def test_the_cpu_limit_component_covers_it_in_a_quota_namespace(tmp_path: Path, with_limit: bool) -> None:
    from tests.k8s_rules import quota_problems

    components = (COMPONENT, WORKLOAD_NAME, VERIFY) + ((MANIFESTS / "components" / "litestream-cpu-limit",)
                                                        if with_limit else ())
    cj = cronjob(kustomize(app_dir(tmp_path / "app", "orders", components=components)))
    pod = cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert bool(quota_problems(pod, {"limits.cpu", "limits.memory", "requests.memory"})) != with_limit


def test_in_a_default_deny_namespace_the_networkpolicy_component_lets_it_reach_s3_and_dns() -> None:
    from tests.k8s_rules import traffic_allowed
    from tests.unit.test_networkpolicy import DEFAULT_DENY, NEEDS, NS, ours

    labels = cronjob(kustomize("examples/app-component"))["spec"]["jobTemplate"]["spec"]["template"]["metadata"]
    pod = {"namespace": NS, "labels": labels["labels"]}
    for direction, peer, port, protocol in NEEDS:
        if direction == "egress":
            assert not traffic_allowed([DEFAULT_DENY], direction, pod, peer, port, protocol)
            assert traffic_allowed([DEFAULT_DENY, *ours()], direction, pod, peer, port, protocol), (peer, port)


@pytest.mark.parametrize("path", [*EXAMPLES, "deployment-overlay", "statefulset-overlay"])
def test_the_alert_selects_the_cronjobs_jobs(tmp_path: Path, path: str) -> None:
    """The Job controller names Jobs <cronjob>-<scheduled minute>: LitestreamVerifyJobFailed's job_name
    selector matches them and its label_replace gives back the CronJob's name (RE2 and Python agree
    on these patterns; Prometheus anchors both)."""
    name = cronjob(kustomize(overlays(tmp_path).get(path, path)))["metadata"]["name"]
    assert len(name) <= CRONJOB_NAME_MAX
    selector = re.fullmatch(r'job_name=~"(.+)"', monitoring.VERIFY_JOBS)
    assert selector and re.fullmatch(selector[1], f"{name}-29001440")
    assert re.fullmatch(r"(.+)-[0-9]+", f"{name}-29001440")[1] == name  # type: ignore[index]
    assert not re.fullmatch(selector[1], "backup-29001440")


@pytest.mark.parametrize(("components", "missing"), [
    ((COMPONENT, VERIFY), "data.LITESTREAM_SUPERVISOR_WORKLOAD"),  # litestream-workload-name left out
    ((COMPONENT, WORKLOAD_NAME, VERIFY), "spec.template.spec.serviceAccountName"),  # no service account named
])
def test_the_build_fails_without_what_the_cronjob_needs(tmp_path: Path, components: tuple[Path, ...],
                                                        missing: str) -> None:
    root = app_dir(tmp_path / "app", "orders", components=components)
    if "serviceAccountName" in missing:
        app = yaml.safe_load((root / "app.yaml").read_text())
        del app["spec"]["template"]["spec"]["serviceAccountName"]
        (root / "app.yaml").write_text(yaml.safe_dump(app))
    out = subprocess.run(["kubectl", "kustomize", str(root)], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode != 0 and missing in out.stderr and "is missing" in out.stderr
