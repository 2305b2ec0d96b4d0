"""The webhook's manifests as a cluster uses them (issue 28, items 6, 7 and 9).

Sources: cert-manager docs "CA" and "SelfSigned" issuers (bootstrap a CA with a SelfSigned issuer,
sign with a CA issuer), Certificate `privateKey.rotationPolicy` (Never keeps the key on renewal;
the default became Always in cert-manager 1.18), cainjector's `inject-ca-from: <namespace>/<name>`
(the Certificate's `ca.crt`), jetstack/cert-manager-webhook-example deploy/.../pki.yaml (the same
chain for a webhook); X.509 path validation (RFC 5280): a certificate verifies against an issuer
with the same name and public key, whatever the issuer certificate's serial or validity. kustomize
v5.5: `transformers:` run after the kustomization's own `namespace:`, a base's replacements before.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.unit.test_manifests import MANIFESTS, kustomize

WEBHOOK = MANIFESTS / "webhook"


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


# --- item 6: a long-lived CA signs the serving certificate ---

def test_the_serving_certificate_is_signed_by_a_long_lived_ca_that_the_bundle_names() -> None:
    docs = kustomize("webhook")
    issuers, certs = by_kind(docs, "Issuer"), by_kind(docs, "Certificate")
    (config,) = by_kind(docs, "MutatingWebhookConfiguration").values()
    ns, ca_name = config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"].split("/")
    ca = certs[ca_name]["spec"]
    assert ca["isCA"] is True and ca["privateKey"]["rotationPolicy"] == "Never"
    assert issuers[ca["issuerRef"]["name"]]["spec"] == {"selfSigned": {}}
    (ca_issuer,) = [i for i in issuers.values() if i["spec"].get("ca", {}).get("secretName") == ca["secretName"]]
    (leaf,) = [c["spec"] for c in certs.values() if c["spec"]["issuerRef"]["name"] == ca_issuer["metadata"]["name"]]
    assert not leaf.get("isCA")
    hours = {k: int(c["duration"].removesuffix("h")) for k, c in (("ca", ca), ("leaf", leaf))}
    assert hours["ca"] >= 5 * 365 * 24 and hours["leaf"] * 10 <= hours["ca"]
    (deployment,) = by_kind(docs, "Deployment").values()
    (volume,) = deployment["spec"]["template"]["spec"]["volumes"]
    assert volume["secret"]["secretName"] == leaf["secretName"]
    (service,) = by_kind(docs, "Service").values()
    assert leaf["dnsNames"][0] == f"{service['metadata']['name']}.{ns}.svc" == \
        f"{config['webhooks'][0]['clientConfig']['service']['name']}.{ns}.svc"


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: str, signer: ec.EllipticCurvePrivateKey,
          ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    return (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)])).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True).sign(signer, hashes.SHA256()))


def verifies(leaf: x509.Certificate, bundle: x509.Certificate) -> bool:
    try:
        leaf.verify_directly_issued_by(bundle)
        return True
    except (InvalidSignature, ValueError):
        return False


def test_renewals_never_leave_the_api_server_and_the_webhook_disagreeing() -> None:
    """The moment that matters: the API server holds the new caBundle while a webhook pod still serves
    the old certificate (or the reverse) until its Secret volume updates."""
    ca_key = _key()
    ca = _cert("webhook CA", ca_key, "webhook CA", ca_key, ca=True)
    leaf_key = _key()
    leaf = _cert("svc", leaf_key, "webhook CA", ca_key, ca=False)
    # a serving certificate renewal (every 75 days): caBundle (the CA) is unchanged, both verify
    renewed_leaf = _cert("svc", _key(), "webhook CA", ca_key, ca=False)
    assert verifies(leaf, ca) and verifies(renewed_leaf, ca)
    # the CA's own renewal (every ~10 years) keeps its key: the old serving certificate verifies too
    renewed_ca = _cert("webhook CA", ca_key, "webhook CA", ca_key, ca=True)
    assert verifies(leaf, renewed_ca)
    # what rotationPolicy: Always on the CA would do: a refusal window at the CA's renewal
    assert not verifies(leaf, _cert("webhook CA", _key(), "webhook CA", _key(), ca=True))
    # what the old manifests did (a self-signed serving certificate is its own caBundle): a window at
    # every renewal
    old = _cert("svc", leaf_key, "svc", leaf_key, ca=True)
    new_key = _key()
    assert not verifies(old, _cert("svc", new_key, "svc", new_key, ca=True))


# --- item 7: any namespace ---

def overlay(tmp_path: Path, *, follow: bool) -> list[dict[str, Any]]:
    root = tmp_path / "platform-webhook"
    root.mkdir()
    base = os.path.relpath(WEBHOOK, root)
    (root / "kustomization.yaml").write_text(yaml.safe_dump({
        "namespace": "platform", "resources": [base],
        **({"transformers": [f"{base}/follow-namespace"]} if follow else {})}))
    return kustomize(root)


def namespace_references(docs: list[dict[str, Any]]) -> dict[str, str]:
    """Every place the webhook's namespace is written, and what it says there."""
    (config,) = by_kind(docs, "MutatingWebhookConfiguration").values()
    (hook,) = config["webhooks"]
    certs = by_kind(docs, "Certificate")
    leaf = certs["litestream-supervisor-webhook"]["spec"]
    own = hook["namespaceSelector"]["matchExpressions"][1]["values"]
    return {
        "Namespace object": next(iter(by_kind(docs, "Namespace"))),
        "Service": by_kind(docs, "Service")["litestream-supervisor-webhook"]["metadata"]["namespace"],
        "Deployment": by_kind(docs, "Deployment")["litestream-supervisor-webhook"]["metadata"]["namespace"],
        "clientConfig.service": hook["clientConfig"]["service"]["namespace"],
        "inject-ca-from": config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"].split("/")[0],
        "Certificate namespace": certs["litestream-supervisor-webhook-ca"]["metadata"]["namespace"],
        **{f"dnsNames[{i}]": name.split(".")[1] for i, name in enumerate(leaf["dnsNames"])},
        "namespaceSelector (own)": own[0] if len(own) == 1 else repr(own),
    }


def test_an_overlay_installs_the_webhook_in_another_namespace_consistently(tmp_path: Path) -> None:
    docs = overlay(tmp_path, follow=True)
    refs = namespace_references(docs)
    assert set(refs.values()) == {"platform"}, refs
    assert "litestream-system" not in yaml.safe_dump_all(docs)


def test_without_follow_namespace_the_references_go_stale(tmp_path: Path) -> None:
    """Why the transformer: kustomize's namespace: moves the objects but not the names written in the
    certificate, the annotation, the Service reference or the selector (the API server would call a
    Service that is not there, and the certificate would not match)."""
    refs = namespace_references(overlay(tmp_path, follow=False))
    stale = {k for k, v in refs.items() if v != "platform"}
    assert {"clientConfig.service", "inject-ca-from", "dnsNames[0]", "namespaceSelector (own)"} <= stale


@pytest.mark.parametrize("namespace", [None, "platform"])
def test_the_default_install_is_consistent_too(tmp_path: Path, namespace: str | None) -> None:
    docs = overlay(tmp_path, follow=True) if namespace else kustomize("webhook")
    assert len(set(namespace_references(docs).values())) == 1


# --- item 9: the ValidatingAdmissionPolicy ---

CRD_GROUPS = ("cert-manager.io/", "monitoring.coreos.com/")


def unknown_kinds(docs: list[dict[str, Any]], version: str, tmp_path: Path) -> set[str]:
    """Built-in kinds the API server of `version` does not serve (kubernetes-validate has no schema:
    `kubectl apply` would fail with "no matches for kind")."""
    import subprocess
    import sys
    rendered = tmp_path / f"render-{version}.yaml"
    rendered.write_text(yaml.safe_dump_all(docs))
    out = subprocess.run([str(Path(sys.executable).parent / "kubernetes-validate"), "-k", version, str(rendered)],
                         capture_output=True, text=True, timeout=120, check=False)
    found = set()
    for line in (out.stdout + out.stderr).splitlines():
        if "Couldn't find schema for kind" in line:
            kind, api = line.split("for kind ")[1].split(" with api version ")
            api = api.split(" for ")[0]
            if not api.startswith(CRD_GROUPS):
                found.add(f"{api}/{kind}")
    return found


def test_the_webhook_applies_on_1_29_and_the_policy_needs_1_30(tmp_path: Path) -> None:
    assert unknown_kinds(kustomize("webhook"), "1.29.0", tmp_path) == set()
    policy = kustomize("policy")
    assert unknown_kinds(policy, "1.30.0", tmp_path) == set()
    assert unknown_kinds(policy, "1.29.0", tmp_path) == {
        "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy",
        "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicyBinding"}


def cel(expression: str, obj: dict[str, Any]) -> bool:
    import celpy
    env = celpy.Environment()
    return bool(env.program(env.compile(expression)).evaluate({"object": celpy.json_to_cel(obj)}))


def policy_spec() -> dict[str, Any]:
    (policy,) = [d for d in kustomize("policy") if d["kind"] == "ValidatingAdmissionPolicy"]
    return policy["spec"]


def judged(obj: dict[str, Any]) -> tuple[bool, bool]:
    """(the policy applies to it, it is allowed) as the API server evaluates the CEL."""
    spec = policy_spec()
    applies = all(cel(c["expression"], obj) for c in spec["matchConditions"])
    return applies, (not applies) or all(cel(v["expression"], obj) for v in spec["validations"])


@pytest.mark.parametrize("path", ["base", "examples/app-base", "examples/app-component", "legacy-sidecar"])
def test_the_policy_selects_the_components_workloads_and_lets_them_in(path: str) -> None:
    for w in (d for d in kustomize(path) if d["kind"] in ("Deployment", "StatefulSet")):
        assert judged(w) == (True, True)
        # each StatefulSet ordinal is its own database (its pod's name: supervisor/admission/owner.py)
        assert judged({**w, "spec": {**w["spec"], "replicas": 2}}) == (True, w["kind"] == "StatefulSet")
        if w["kind"] == "Deployment":
            assert judged({**w, "spec": {**w["spec"], "strategy": {"type": "RollingUpdate"}}}) == (True, False)


def test_a_statefulset_scales_unless_its_ordinals_share_a_fixed_replica_path() -> None:
    """A StatefulSet's pods each have a stable identity and their own name, which names the default
    replica path and lease: ordinals never share a database, so replicas > 1 is allowed. A fixed
    litestream-supervisor.io/replica-path on the template makes every ordinal write one replica
    (the webhook refuses ordinal >= 1 then): the policy sees that annotation and denies it."""
    sts = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "namespace": "shop"},
           "spec": {"replicas": 3, "serviceName": "db", "template": {"metadata": {
               "labels": {"litestream-supervisor.io/inject": "true"},
               "annotations": {"litestream-supervisor.io/db": "/data/app.db"}}, "spec": {"containers": []}}}}
    assert judged(sts) == (True, True)
    sts["spec"]["template"]["metadata"]["annotations"]["litestream-supervisor.io/replica-path"] = "shared/app.db"
    assert judged(sts) == (True, False)
    sts["spec"]["replicas"] = 1
    assert judged(sts) == (True, True)
    for kind in ("Deployment", "ReplicaSet"):  # one database per workload: one writer
        rs = {**sts, "kind": kind, "spec": {**sts["spec"], "replicas": 2, "strategy": {"type": "Recreate"}}}
        assert judged(rs) == (True, False)


def test_the_policy_cannot_see_an_opt_in_through_the_scale_subresource() -> None:
    """The documented limit: an autoscaling/v1 Scale carries no labels and no template (only name,
    replicas and a selector string), so no condition can tell an opted-in workload's scale-up."""
    scale = {"apiVersion": "autoscaling/v1", "kind": "Scale",
             "metadata": {"name": "wiki", "namespace": "wiki", "uid": "u", "resourceVersion": "1"},
             "spec": {"replicas": 3}, "status": {"replicas": 1, "selector": "app.kubernetes.io/name=wiki"}}
    assert judged(scale) == (False, True)
    rules = policy_spec()["matchConstraints"]["resourceRules"]
    assert not any(r.endswith("/scale") for rule in rules for r in rule["resources"])
    assert "/scale subresource" in (MANIFESTS / "policy" / "validatingadmissionpolicy.yaml").read_text()


# --- item 8: GitOps adoption of Recreate under server-side apply ---

def readme_one_time_step() -> list[dict[str, Any]]:
    import json
    readme = (MANIFESTS.parent / "README.md").read_text()
    line = next(ln for ln in readme.splitlines() if "patch deployment" in ln and "--type=json" in ln)
    return json.loads(line.split(" -p '", 1)[1].rsplit("'", 1)[0])


def rendered_deployment() -> dict[str, Any]:
    (deployment,) = [d for d in kustomize("examples/app-component") if d["kind"] == "Deployment"]
    return deployment


def without_nulls(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: without_nulls(v) for k, v in obj.items() if v is not None}
    return obj


@pytest.mark.parametrize("created_by", [("kubectl-client-side-apply", "Update"), ("kustomize-controller", "Apply")])
def test_adopting_a_live_deployment_with_recreate_under_server_side_apply(created_by: tuple[str, str]) -> None:
    """The live object: the app's Deployment as first created, without a strategy (defaulted to
    RollingUpdate 25%/25%), by a client-side apply or by Flux's server-side apply. Then the Component's
    render is applied server-side with force, as Flux and Argo CD do. Sources: kubernetes#24198
    ("rollingUpdate: Forbidden" on apply), openshift/cluster-network-operator#3121 (the same
    adoption fixed by a one-time pre-patch), gimlet-io/onechart#35 (`rollingUpdate: null` works with
    kubectl apply, not with Flux), kubernetes-sigs/structured-merge-diff#235 (SSA keeps nulls)."""
    import jsonpatch

    from tests.k8s_rules import create, server_side_apply, workload_problems
    rendered = rendered_deployment()
    app = yaml.safe_load((MANIFESTS / "examples/app-component/deployment.yaml").read_text())
    live, owners = create(app, *created_by)
    assert live["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": "25%", "maxUnavailable": "25%"}

    def valid(obj: dict[str, Any]) -> bool:
        return not [p for p in workload_problems(obj, {}) if "strategy" in p]

    # the render, as kubectl apply --server-side (and Argo CD's SSA) sends it: the null clears the block
    applied, _ = server_side_apply(live, owners, rendered, "argocd-controller")
    assert applied["spec"]["strategy"] == {"type": "Recreate"} and valid(applied)
    # a tool that drops nulls: the defaulted block survives and the API server refuses the object
    stripped, _ = server_side_apply(live, owners, without_nulls(rendered), "kustomize-controller")
    assert not valid(stripped)
    # ... until the README's one-time step (a JSON patch, an Update owning spec.strategy) is run
    patched = jsonpatch.apply_patch(live, readme_one_time_step())
    owners_after = {p: m for p, m in owners.items() if p[:2] != ("spec", "strategy")}
    owners_after[("spec", "strategy", "type")] = {"kubectl-patch"}
    adopted, _ = server_side_apply(patched, owners_after, without_nulls(rendered), "kustomize-controller")
    assert adopted["spec"]["strategy"] == {"type": "Recreate"} and valid(adopted)
