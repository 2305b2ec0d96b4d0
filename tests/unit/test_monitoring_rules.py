"""The shipped rules with promtool (issue 15): `promtool check rules` clean, and `promtool test rules`
for every alert: it fires when it should and stays silent when it should not. Series are minute
samples; labels as the PodMonitor gives them (namespace, pod), or as kube-state-metrics does
(namespace, job_name)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "manifests" / "monitoring"
sys.path.insert(0, str(MONITORING))
import generate as monitoring  # noqa: E402

POD = 'namespace="shop",pod="orders-0"'
DB = POD + ',db="/data/app.db"'
FAILURES = "litestream_supervisor_verify_failures_total"
VERIFY_INTERVAL = 600  # --verify-interval in these cases: 3 intervals are 30 minutes
WIKI = 'namespace="wiki"'
OLD_JOB, NEW_JOB = "litestream-verify-wiki-29000000", "litestream-verify-wiki-29001440"  # a day apart


def values(per_minute: list[float]) -> str:
    return " ".join(f"{v:g}" for v in per_minute)


def job(name: str, created: int, failed: bool | None = None, minutes: int = 20) -> list[tuple[str, str]]:
    """kube-state-metrics' series for one Job: created; kube_job_failed only once it has finished."""
    series = [(f'kube_job_created{{{WIKI},job_name="{name}"}}', f"{created}x{minutes}")]
    if failed is not None:
        for condition, value in (("true", int(failed)), ("false", int(not failed)), ("unknown", 0)):
            labels = f'{WIKI},job_name="{name}",condition="{condition}"'
            series.append((f"kube_job_failed{{{labels}}}", f"{value}x{minutes}"))
    return series


# alert -> input series under which it must be firing at minute `at` (with `labels`), series under which
# it must stay silent, and optionally more silent cases ("quiet_too": (series, minute)); labels are
# added to `base` (the PodMonitor's namespace and pod, unless a case says otherwise)
CASES: dict[str, dict[str, Any]] = {
    "LitestreamReplicationLagHigh": {
        "fire": [(f"litestream_supervisor_replication_lag_seconds{{{DB}}}", "0 30 90x15")],
        "quiet": [(f"litestream_supervisor_replication_lag_seconds{{{DB}}}", "0 30 50x15")],
        "at": 12, "labels": {"db": "/data/app.db"}},
    "LitestreamReplicaProbeFailing": {
        "fire": [(f"litestream_supervisor_replica_probe_ok{{{DB}}}", "1 0x15")],
        "quiet": [(f"litestream_supervisor_replica_probe_ok{{{DB}}}", "1 0 0 1x13")],
        "at": 10, "labels": {"db": "/data/app.db"}},
    "LitestreamNoUploadWhileChanging": {
        # the database is written each minute (its WAL index), Litestream stages nothing (local txid
        # flat: a full meta dir, issue 26) and the newest upload stays at t=0
        "fire": [(f"litestream_supervisor_db_changes_total{{{DB}}}", "1+1x30"),
                 (f"litestream_supervisor_local_txid{{{DB}}}", "5x30"),
                 (f"litestream_supervisor_last_upload_timestamp_seconds{{{DB}}}", "1x30")],
        "quiet": [(f"litestream_supervisor_db_changes_total{{{DB}}}", "1+1x30"),
                  (f"litestream_supervisor_last_upload_timestamp_seconds{{{DB}}}", "0+60x30")],
        "at": 20, "labels": {"db": "/data/app.db"}},
    "LitestreamCredentialsInvalid": {
        "fire": [(f"litestream_supervisor_credentials_valid{{{POD}}}", "1 1 0x10"),
                 (f"litestream_supervisor_uptime_seconds{{{POD}}}", "600+60x12")],
        "quiet": [(f"litestream_supervisor_credentials_valid{{{POD}}}", "1x12"),
                  (f"litestream_supervisor_uptime_seconds{{{POD}}}", "600+60x12")],
        "at": 8, "labels": {}},
    "LitestreamCredentialsExpiringRefreshFailing": {
        # expiry at t=10m; from t=3m every refresh is unavailable
        "fire": [(f"litestream_supervisor_credentials_expiration_timestamp_seconds{{{POD}}}", "600x12"),
                 (f'litestream_supervisor_sts_requests_total{{{POD},result="unavailable"}}', "0 0 0 1+1x10"),
                 (f'litestream_supervisor_sts_requests_total{{{POD},result="ok"}}', "1x12")],
        "quiet": [(f"litestream_supervisor_credentials_expiration_timestamp_seconds{{{POD}}}", "3600x12"),
                  (f'litestream_supervisor_sts_requests_total{{{POD},result="unavailable"}}', "0 0 0 1+1x10"),
                  (f'litestream_supervisor_sts_requests_total{{{POD},result="ok"}}', "1x12")],
        "at": 8, "labels": {}},
    "LitestreamSTSRefusing": {
        "fire": [(f'litestream_supervisor_sts_last_result{{{POD},result="refused"}}', "0 1x10")],
        "quiet": [(f'litestream_supervisor_sts_last_result{{{POD},result="refused"}}', "0 1 0x10")],
        "at": 5, "labels": {"result": "refused"}},
    "LitestreamSTSUnavailable": {
        "fire": [(f'litestream_supervisor_sts_last_result{{{POD},result="unavailable"}}', "0 1x12")],
        # a blip: the next exchange succeeded
        "quiet": [(f'litestream_supervisor_sts_last_result{{{POD},result="unavailable"}}', "0 1 0x12")],
        "at": 8, "labels": {"result": "unavailable"}},
    "LitestreamRestartingRepeatedly": {
        "fire": [(f"litestream_supervisor_litestream_restarts_total{{{POD}}}", "0 1 2 3 4 5x10")],
        "quiet": [(f"litestream_supervisor_litestream_restarts_total{{{POD}}}", "0 1 1 1 1x10")],
        "at": 6, "labels": {}},
    "LitestreamSidecarNotReady": {
        "fire": [(f"litestream_supervisor_ready{{{POD}}}", "1 0x15")],
        "quiet": [(f"litestream_supervisor_ready{{{POD}}}", "1 0 0 0 1x12")],
        "at": 13, "labels": {}},
    "LitestreamLeaseLost": {
        "fire": [(f"litestream_supervisor_lease_lost{{{DB}}}", "0 0 1x5")],
        "quiet": [(f"litestream_supervisor_lease_lost{{{DB}}}", "0x8")],
        "at": 4, "labels": {"db": "/data/app.db"}},
    "LitestreamLeaseWaiting": {
        "fire": [(f"litestream_supervisor_lease_held{{{DB}}}", "0x10"),
                 (f"litestream_supervisor_lease_lost{{{DB}}}", "0x10")],
        "quiet": [(f"litestream_supervisor_lease_held{{{DB}}}", "0 0 1x8"),
                  (f"litestream_supervisor_lease_lost{{{DB}}}", "0x10")],
        "at": 8, "labels": {"db": "/data/app.db"}},
    "LitestreamVerifyFailing": {
        # a drill reporting `differs` (the sidecar's drill found the replica is not the database)
        "fire": [(f'{FAILURES}{{{DB},reason="differs"}}', "0 0 0 1x10"),
                 (f'{FAILURES}{{{DB},reason="unreachable"}}', "0x13")],
        # drills failing for reasons that are not the replica's data (S3 away, scratch space short)
        "quiet": [(f'{FAILURES}{{{DB},reason="unreachable"}}', "0 0 0 1 2 3x10"),
                  (f'{FAILURES}{{{DB},reason="scratch_short"}}', "0 1 2 3x10"),
                  (f'{FAILURES}{{{DB},reason="differs"}}', "0x13")],
        # a data failure longer ago than the window, none since
        "quiet_too": [([(f'{FAILURES}{{{DB},reason="integrity_failed"}}', "0 1x200")], 180)],
        "at": 5, "labels": {"db": "/data/app.db", "reason": "differs"}},
    "LitestreamVerifyStale": {
        # drills on, the sidecar up for 40 minutes and more, no drill ever succeeded
        "fire": [(f"litestream_supervisor_verify_interval_seconds{{{POD}}}", f"{VERIFY_INTERVAL}x60"),
                 (f"litestream_supervisor_uptime_seconds{{{POD}}}", "600+60x60"),
                 (f"litestream_supervisor_verify_last_success_timestamp_seconds{{{DB}}}", "0x60")],
        # drills off (--verify-interval 0)
        "quiet": [(f"litestream_supervisor_verify_interval_seconds{{{POD}}}", "0x60"),
                  (f"litestream_supervisor_uptime_seconds{{{POD}}}", "600+60x60"),
                  (f"litestream_supervisor_verify_last_success_timestamp_seconds{{{DB}}}", "0x60")],
        "quiet_too": [
            # a success every interval
            ([(f"litestream_supervisor_verify_interval_seconds{{{POD}}}", f"{VERIFY_INTERVAL}x60"),
              (f"litestream_supervisor_uptime_seconds{{{POD}}}", "600+60x60"),
              (f"litestream_supervisor_verify_last_success_timestamp_seconds{{{DB}}}",
               values([60 * 10 * (m // 10) for m in range(61)]))], 45),
            # a sidecar restarted at minute 30, 25 minutes ago: not yet 3 intervals to drill in
            ([(f"litestream_supervisor_verify_interval_seconds{{{POD}}}", f"{VERIFY_INTERVAL}x60"),
              (f"litestream_supervisor_uptime_seconds{{{POD}}}", "3000+60x29 0+60x30"),
              (f"litestream_supervisor_verify_last_success_timestamp_seconds{{{DB}}}", "0x60")], 55)],
        "at": 45, "labels": {"db": "/data/app.db"}},
    "LitestreamVerifyNeverCompared": {
        # drills every minute restore (successes) but none ever compared content, the sidecar up for long
        "fire": [(f"litestream_supervisor_verify_interval_seconds{{{POD}}}", "60x60"),
                 (f"litestream_supervisor_uptime_seconds{{{POD}}}", "600+60x60"),
                 (f"litestream_supervisor_verify_last_compared_timestamp_seconds{{{DB}}}", "0x60")],
        # a comparison every 10 minutes
        "quiet": [(f"litestream_supervisor_verify_interval_seconds{{{POD}}}", "60x60"),
                  (f"litestream_supervisor_uptime_seconds{{{POD}}}", "600+60x60"),
                  (f"litestream_supervisor_verify_last_compared_timestamp_seconds{{{DB}}}",
                   values([60 * 10 * (m // 10) for m in range(61)]))],
        "quiet_too": [
            # drills off
            ([(f"litestream_supervisor_verify_interval_seconds{{{POD}}}", "0x60"),
              (f"litestream_supervisor_uptime_seconds{{{POD}}}", "600+60x60"),
              (f"litestream_supervisor_verify_last_compared_timestamp_seconds{{{DB}}}", "0x60")], 45),
            # a sidecar started 20 minutes ago: not yet 24 intervals to compare in
            ([(f"litestream_supervisor_verify_interval_seconds{{{POD}}}", "60x60"),
              (f"litestream_supervisor_uptime_seconds{{{POD}}}", "0+60x60"),
              (f"litestream_supervisor_verify_last_compared_timestamp_seconds{{{DB}}}", "0x60")], 20)],
        "at": 45, "labels": {"db": "/data/app.db"}},
    "LitestreamVerifyJobFailed": {
        # wiki's newest verify Job failed; another verify CronJob in the namespace ran later and passed
        "fire": [*job(OLD_JOB, 1740000000, failed=False), *job(NEW_JOB, 1740086400, failed=True),
                 *job("litestream-verify-wiki-reports-29001500", 1740090000, failed=False)],
        # the failed Job is history (failedJobsHistoryLimit keeps it): the newest one passed
        "quiet": [*job(OLD_JOB, 1740000000, failed=True), *job(NEW_JOB, 1740086400, failed=False)],
        "quiet_too": [
            # the newest one still runs (no Failed condition yet)
            ([*job(OLD_JOB, 1740000000, failed=True), *job(NEW_JOB, 1740086400)], 10),
            # another CronJob's Job failed
            ([*job("backup-29001440", 1740086400, failed=True)], 10)],
        "at": 10, "base": {"namespace": "wiki"},
        "labels": {"cronjob": "litestream-verify-wiki", "job_name": NEW_JOB}},
}


def promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool is missing: make deps installs Debian's prometheus package"
    return found


def alerts() -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in monitoring.rules()["groups"] for r in g["rules"] if "alert" in r}


def render(template: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m[1], ""), template)


def test_every_alert_has_a_case_summary_description_and_runbook() -> None:
    """...and a row in README's alert table with its severity, and the runbook its URL points at."""
    readme = (ROOT / "README.md").read_text()
    assert set(alerts()) == set(CASES)
    for name, rule in alerts().items():
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"]), name
        assert rule["annotations"]["runbook_url"].endswith(f"#runbook-{name.lower()}")
        assert f"### Runbook: {name}\n" in readme, name  # GitHub's anchor: #runbook-<name, lowercased>
        assert f"| {name} | {rule['labels']['severity']} |" in readme, name


def test_promtool_check_rules_is_clean() -> None:
    out = subprocess.run([promtool(), "check", "rules", str(MONITORING / "prometheus-rules.yml")],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0 and "SUCCESS" in out.stdout, out.stdout + out.stderr


# kube-state-metrics' Job metrics (internal/store/job.go; labels namespace, job_name; kube_job_failed
# also condition="true|false|unknown", 1 for the Job's Failed condition's status)
KUBE_STATE_METRICS = {"kube_job_created", "kube_job_failed", "kube_job_complete", "kube_job_status_failed",
                      "kube_job_status_succeeded", "kube_job_status_active", "kube_job_owner"}


def used_metrics(expr: str) -> set[str]:
    return set(re.findall(r"\b((?:litestream_supervisor[:_]|kube_)[a-z0-9_:]+)", expr))


def exported_metrics() -> set[str]:
    """What a sidecar's /metrics holds with a database, its lease and drills."""
    from supervisor.core.state import DatabaseState, LeaseState, State, VerifyState
    from supervisor.health.metrics import registry_for, render

    db = "/data/app.db"
    state = State(databases={db: DatabaseState(db)}, leases={db: LeaseState(db)}, verify={db: VerifyState(db)},
                  verify_interval_seconds=3600)
    text = render(registry_for(state, lambda: True)).decode()
    return {re.split(r"[{ ]", line)[0] for line in text.splitlines() if line and not line.startswith("#")}


def test_every_metric_the_dashboard_and_the_rules_use_exists() -> None:
    """Each name in an expression is a metric the sidecar exports, a recording rule of ours, or a
    kube-state-metrics Job metric (the verify CronJob's alert): a renamed metric fails here, not on a
    dashboard that silently shows nothing."""
    groups = monitoring.rules()["groups"]
    known = exported_metrics() | {r["record"] for g in groups for r in g["rules"] if "record" in r} | KUBE_STATE_METRICS
    dashboard = json.loads((MONITORING / "dashboard.json").read_text())
    exprs = {f"panel {p['title']!r} {t['refId']}": t["expr"] for p in dashboard["panels"] for t in p["targets"]}
    exprs |= {r.get("alert") or r["record"]: r["expr"] for g in groups for r in g["rules"]}
    missing = {where: sorted(used_metrics(e) - known) for where, e in exprs.items() if used_metrics(e) - known}
    assert not missing, missing
    panels = " ".join(exprs[k] for k in exprs if k.startswith("panel"))
    for name in ("verify_last_success_timestamp_seconds", "verify_failures_total", "verify_duration_seconds",
                 "verify_compared"):
        assert f"litestream_supervisor_{name}" in panels


def test_rules_files_are_generated_from_the_thresholds() -> None:
    out = subprocess.run([sys.executable, str(MONITORING / "generate.py"), "--check"], capture_output=True,
                         text=True, check=False)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("name", sorted(CASES))
def test_alert_fires_when_it_should_and_not_otherwise(tmp_path: Path, name: str) -> None:
    rule = alerts()[name]
    case = CASES[name]
    base = case.get("base", {"namespace": "shop", "pod": "orders-0"})
    labels = {**base, **case["labels"], "severity": rule["labels"]["severity"]}
    annotations = {k: render(v, labels) for k, v in rule["annotations"].items()}
    scenarios = [(case["fire"], case["at"], True), (case["quiet"], case["at"], False),
                 *((series, at, False) for series, at in case.get("quiet_too", []))]
    tests = []
    for series, at, fires in scenarios:
        expected = [{"exp_labels": labels, "exp_annotations": annotations}] if fires else []
        tests.append({"interval": "1m",
                      "input_series": [{"series": s, "values": v} for s, v in series],
                      "alert_rule_test": [{"eval_time": f"{at}m", "alertname": name, "exp_alerts": expected}]})
    test_file = tmp_path / "test.yml"
    test_file.write_text(yaml.safe_dump({"rule_files": [str(MONITORING / "prometheus-rules.yml")],
                                         "evaluation_interval": "1m", "tests": tests}, sort_keys=False))
    out = subprocess.run([promtool(), "test", "rules", str(test_file)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
