"""Prometheus metrics, read from State at scrape time (metrics never write anything)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from supervisor import __version__
from supervisor.core.state import State

P = "litestream_supervisor_"


class StateCollector(Collector):
    def __init__(self, state: State, ready: Callable[[], bool]) -> None:
        self.state = state
        self.ready = ready

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        s = self.state
        info = GaugeMetricFamily(P + "info", "Supervisor version.", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        yield GaugeMetricFamily(P + "ready", "1 when /readyz would answer 200.", value=1 if self.ready() else 0)
        yield GaugeMetricFamily(P + "credentials_expiration_timestamp_seconds",
                                "Expiry of the credentials being served (unix seconds; 0 before the first).",
                                value=s.credentials_expiration or 0)
        yield GaugeMetricFamily(P + "credentials_valid", "1 while unexpired credentials are served.",
                                value=1 if s.credentials_valid() else 0)
        sts = CounterMetricFamily(P + "sts_requests", "AssumeRoleWithWebIdentity calls by result.", labels=["result"])
        for result in ("ok", "refused", "unavailable"):
            sts.add_metric([result], s.sts_requests.get(result, 0))
        yield sts
        last = GaugeMetricFamily(P + "sts_last_result", "1 for the outcome of the newest STS exchange.",
                                 labels=["result"])
        for result in ("ok", "refused", "unavailable"):
            last.add_metric([result], 1 if s.last_sts_result == result else 0)
        yield last
        yield CounterMetricFamily(P + "credential_refreshes", "Credentials replaced after the first.",
                                  value=s.credential_refreshes)
        yield GaugeMetricFamily(P + "session_policy",
                                "1 while the served credentials are narrowed to the replicas by the inline "
                                "session policy; 0 with the role's whole policy (--session-policy off, or "
                                "auto where the store refuses batch deletes under it).",
                                value=1 if s.session_policy else 0)
        yield CounterMetricFamily(P + "token_rotations", "Token rotations seen in the token directory.",
                                  value=s.token_rotations)
        yield GaugeMetricFamily(P + "litestream_up", "1 while the Litestream child runs.",
                                value=1 if s.child_running else 0)
        yield CounterMetricFamily(P + "litestream_restarts", "Litestream child restarts after unexpected exits.",
                                  value=s.child_restarts)
        lag = GaugeMetricFamily(P + "replication_lag_seconds",
                                "Age of the oldest change of the database not yet in the replica, staged by "
                                "Litestream or not (0 when caught up).", labels=["db"])
        changes = CounterMetricFamily(P + "db_changes", "Write transactions seen in the database's WAL index.",
                                      labels=["db"])
        changed = GaugeMetricFamily(P + "db_changed_timestamp_seconds",
                                    "When the database was last seen to change (unix seconds; 0: not yet).",
                                    labels=["db"])
        upload = GaugeMetricFamily(P + "last_upload_timestamp_seconds",
                                   "Time of the newest LTX file seen in the replica (unix seconds).", labels=["db"])
        local = GaugeMetricFamily(P + "local_txid", "Newest local transaction ID.", labels=["db"])
        remote = GaugeMetricFamily(P + "replica_txid", "Newest transaction ID in the replica.", labels=["db"])
        probe = GaugeMetricFamily(P + "replica_probe_ok", "1 when the last replica listing succeeded.", labels=["db"])
        for name, db in sorted(s.databases.items()):
            lag.add_metric([name], db.lag_seconds)
            changes.add_metric([name], db.changes)
            changed.add_metric([name], db.changed_at or 0)
            upload.add_metric([name], db.last_upload_at or 0)
            local.add_metric([name], db.local_txid)
            remote.add_metric([name], db.remote_txid)
            probe.add_metric([name], 0 if db.probe_error else 1)
        yield from (lag, changes, changed, upload, local, remote, probe)
        errors = CounterMetricFamily(P + "litestream_errors", "Litestream's own error lines, by kind.",
                                     labels=["kind"])
        for kind in ("disk_full", "sync", "other"):
            errors.add_metric([kind], s.litestream_errors.get(kind, 0))
        yield errors
        yield CounterMetricFamily(P + "db_replacements",
                                  "Litestream restarted onto a database file replaced under it.",
                                  value=s.db_replacements)
        held = GaugeMetricFamily(P + "lease_held", "1 while this pod holds the replica's lease.", labels=["db"])
        fenced = GaugeMetricFamily(P + "lease_fenced", "1 while uploads are stopped: lease not confirmed.",
                                   labels=["db"])
        lost = GaugeMetricFamily(P + "lease_lost", "1 once another pod took the lease over.", labels=["db"])
        renewals = CounterMetricFamily(P + "lease_renewals", "Lease renewals by result.", labels=["db", "result"])
        takeovers = CounterMetricFamily(P + "lease_takeovers",
                                        "Leases taken from a released or expired holder.", labels=["db"])
        waited = GaugeMetricFamily(P + "lease_wait_seconds", "Seconds waited for the lease at start.", labels=["db"])
        for name, lease in sorted(s.leases.items()):
            held.add_metric([name], 1 if lease.held else 0)
            fenced.add_metric([name], 1 if lease.fenced else 0)
            lost.add_metric([name], 1 if lease.lost else 0)
            for result in ("ok", "error", "lost"):
                renewals.add_metric([name, result], lease.renewals.get(result, 0))
            takeovers.add_metric([name], lease.takeovers)
            waited.add_metric([name], lease.waited_seconds)
        yield from (held, fenced, lost, renewals, takeovers, waited)
        yield from _verify(s)
        yield GaugeMetricFamily(P + "uptime_seconds", "Seconds since start.", value=time.time() - s.started_at)


VERIFY_REASONS = ("unrestorable", "integrity_failed", "differs", "scratch_short", "unreachable", "error")


def _verify(s: State) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
    success = GaugeMetricFamily(P + "verify_last_success_timestamp_seconds",
                                "When the newest successful restore drill ended (unix seconds; 0: none yet).",
                                labels=["db"])
    failures = CounterMetricFamily(P + "verify_failures", "Restore drills that failed, by reason.",
                                   labels=["db", "reason"])
    duration = GaugeMetricFamily(P + "verify_duration_seconds", "How long the newest restore drill took.",
                                 labels=["db"])
    compared = GaugeMetricFamily(P + "verify_compared",
                                 "1 when the newest successful drill compared content, not only restored it.",
                                 labels=["db"])
    compared_at = GaugeMetricFamily(P + "verify_last_compared_timestamp_seconds",
                                    "When a drill last compared the replica's content with the database and found "
                                    "it the same (unix seconds; 0: never yet).", labels=["db"])
    for name, v in sorted(s.verify.items()):
        success.add_metric([name], v.last_success_at or 0)
        compared_at.add_metric([name], v.last_compared_at or 0)
        for reason in VERIFY_REASONS:
            failures.add_metric([name, reason], v.failures.get(reason, 0))
        duration.add_metric([name], v.last_seconds)
        compared.add_metric([name], 1 if v.compared else 0)
    yield from (success, failures, duration, compared, compared_at)
    yield GaugeMetricFamily(P + "verify_interval_seconds", "Seconds between restore drills (0: off).",
                            value=s.verify_interval_seconds)


def registry_for(state: State, ready: Callable[[], bool]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StateCollector(state, ready))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
