"""A real Prometheus scrapes a running `replicate` sidecar on the bed (issue 15): every dashboard and
rule expression has data; the sidecar's first restore drill is in the metrics within two intervals
(issue 27); with S3 cut the probe and lag alerts go pending then firing, and with no drill able to
succeed the drills' staleness alert fires; probe and lag resolve after S3 returns; with STS down
past the credentials' expiry the credentials alert fires. The rules are the shipped ones with
`for:` cut to seconds (same expressions)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.bed.net import Forwarder, free_port, wait_for_port
from tests.bed.pod import Pod, Supervisor, Writer

pytestmark = pytest.mark.bed
DRILL_INTERVAL = 5  # --verify-interval: stale after 3 of them (thresholds.yaml)
MONITORING = Path(__file__).resolve().parents[2] / "manifests" / "monitoring"
sys.path.insert(0, str(MONITORING))
import generate as monitoring  # noqa: E402


class Prometheus:
    def __init__(self, root: Path, target_port: int) -> None:
        binary = shutil.which("prometheus")
        assert binary, "prometheus is missing: make deps installs Debian's prometheus package"
        root.mkdir(parents=True, exist_ok=True)
        (root / "rules.yml").write_text(yaml.safe_dump(monitoring.rules(short=True), sort_keys=False))
        (root / "prometheus.yml").write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(root / "rules.yml")],
            "scrape_configs": [{"job_name": "litestream", "static_configs": [{
                "targets": [f"127.0.0.1:{target_port}"], "labels": {"namespace": "tests", "pod": "app-0"}}]}],
        }))
        self.port = free_port()
        self.log = open(root / "prometheus.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen([binary, f"--config.file={root / 'prometheus.yml'}",
                                      f"--storage.tsdb.path={root / 'data'}",
                                      f"--web.listen-address=127.0.0.1:{self.port}"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        wait_for_port(self.port, 30)
        self.wait_ready(60)

    def wait_ready(self, timeout: float) -> None:
        # The port opens before the TSDB and rules are loaded; until then the API answers 503.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=5) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise AssertionError(f"prometheus not ready after {timeout}s")

    def api(self, path: str, **params: str) -> Any:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.loads(r.read())["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return self.api("query", query=expr)["result"]

    def alert_state(self, name: str) -> str | None:
        states = [a["state"] for a in self.api("alerts")["alerts"] if a["labels"]["alertname"] == name]
        return "firing" if "firing" in states else (states[0] if states else None)

    def wait(self, predicate: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.5)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}: {self.api('alerts')}")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()


@pytest.fixture
def watched(pod: Pod, tmp_path: Path) -> Iterator[tuple[Supervisor, Prometheus, Forwarder, Forwarder]]:
    sts = Forwarder(int(pod.bed.endpoint.rsplit(":", 1)[1]))
    sts.start()
    with pod.through_forwarder() as s3:
        sup = pod.start_replicate("--duration-seconds", "10", "--verify-interval", str(DRILL_INTERVAL),
                                  env=pod.env(AWS_ENDPOINT_URL_STS=sts.url))
        sup.wait_ready()
        prometheus = Prometheus(tmp_path / "prometheus", sup.health_port)
        try:
            yield sup, prometheus, s3, sts
        finally:
            prometheus.close()
            sts.stop()


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(litestream_supervisor[:_][a-z0-9_:]+)", expr))


def test_alerts_fire_and_resolve_on_a_live_prometheus(pod: Pod, watched: Any) -> None:
    sup, prometheus, s3, sts = watched
    writer = Writer(pod.db(), 0.05).start()
    prometheus.wait(lambda: prometheus.query("litestream_supervisor_ready == 1"), 60, "first scrape")
    # the first drill (after one interval, +10% jitter) is in the metrics by the scrape after it
    prometheus.wait(lambda: prometheus.query("litestream_supervisor_verify_last_success_timestamp_seconds > 0"),
                    2 * DRILL_INTERVAL + 5, "the first restore drill's success")
    time.sleep(3)
    # every expression of the dashboard returns data, and every metric a rule uses exists
    dashboard = json.loads((MONITORING / "dashboard.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            prometheus.wait(lambda e=target["expr"]: prometheus.query(e), 30, f"data for panel {panel['title']!r}")
    for group in monitoring.rules(short=True)["groups"]:
        for rule in group["rules"]:
            for name in metric_names(rule["expr"]):
                assert prometheus.query(name), f"{rule.get('alert') or rule['record']}: no series {name}"
    # S3 cut: the probe alert, then the lag alert (its threshold is the shipped 60 s)
    s3.cut()
    prometheus.wait(lambda: prometheus.alert_state("LitestreamReplicaProbeFailing") == "pending", 60, "probe pending")
    prometheus.wait(lambda: prometheus.alert_state("LitestreamReplicaProbeFailing") == "firing", 60, "probe firing")
    prometheus.wait(lambda: prometheus.alert_state("LitestreamReplicationLagHigh") == "firing", 150, "lag firing")
    # no drill can restore without S3: none succeeds for 3 intervals
    prometheus.wait(lambda: prometheus.alert_state("LitestreamVerifyStale") == "firing", 60, "drills stale")
    s3.restore()
    prometheus.wait(lambda: prometheus.alert_state("LitestreamReplicaProbeFailing") is None
                    and prometheus.alert_state("LitestreamReplicationLagHigh") is None, 120, "S3 alerts resolved")
    # drills succeed again after the fence and restart S3's absence caused (no false `differs`)
    prometheus.wait(lambda: prometheus.alert_state("LitestreamVerifyStale") is None, 3 * DRILL_INTERVAL + 30,
                    "drills fresh again")
    assert prometheus.alert_state("LitestreamVerifyFailing") is None
    # STS down past the 10 s credentials' expiry
    sts.cut()
    prometheus.wait(lambda: prometheus.alert_state("LitestreamCredentialsInvalid") == "firing", 90,
                    "credentials alert firing")
    assert prometheus.alert_state("LitestreamSTSUnavailable") == "firing"
    assert prometheus.alert_state("LitestreamSTSRefusing") is None  # an outage, not a refusal
    sts.restore()
    prometheus.wait(lambda: prometheus.alert_state("LitestreamCredentialsInvalid") is None, 90, "credentials back")
    # replication resumes: the lease is renewed again, and stays unfenced; the credentials obtained
    # after the outage are themselves refreshed before they expire (10 s lifetime: watch 25 s)
    renewed = f'_total{{db="{pod.db()}",result="ok"}}'
    before = sup.metric("litestream_supervisor_lease_renewals", renewed)
    sup.wait_for(lambda: sup.metric("litestream_supervisor_lease_renewals", renewed) > before, 60,
                 "a lease renewal after the STS outage")
    for _ in range(25):
        assert sup.metric("litestream_supervisor_lease_fenced", f'{{db="{pod.db()}"}}') == 0
        assert sup.metric("litestream_supervisor_credentials_valid") == 1, "credentials lapsed with STS up"
        time.sleep(1)
    writer.stop()
    sup.scrape()
    assert sup.terminate(timeout=90) == 0, sup.output()[-3000:]
