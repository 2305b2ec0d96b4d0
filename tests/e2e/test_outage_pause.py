"""Through a replica outage (supervisor/jobs/outage.py), on the real bed: the backlog goes up as a
few files when the store returns, not one per second of outage, with no row lost and Litestream
never restarted. (Issue 29: a herd of 50 sidecars landed ~15 level-0 files each in the seconds
after a 30 s outage, 5.7x the store's steady rate.)
"""

from __future__ import annotations

import time

import pytest

from tests.bed.pod import Pod, connect
from tests.bed.replicas import commit_rows, replica_catches_up, restore_and_compare, role_s3

pytestmark = pytest.mark.bed

OUTAGE_COMMITS = 24  # one a second: a Litestream running through it stages a file for each


def level0_keys(pod: Pod) -> set[str]:
    pages = role_s3(pod).get_paginator("list_objects_v2").paginate(
        Bucket=pod.bed.role.bucket, Prefix=f"{pod.prefix}/app.db/0000/")
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


def test_an_outage_backlog_goes_up_as_a_few_files_and_every_row_arrives(pod: Pod) -> None:
    with pod.through_forwarder() as fwd:
        # a long TTL: the lease is not what this is about (a fence would restart Litestream)
        sup = pod.start_replicate("--lease-ttl", "150", env=pod.env(AWS_ENDPOINT_URL_STS=pod.bed.endpoint))
        sup.wait_ready()
        app = connect(pod.db())
        committed = commit_rows(app, 1, 10)
        replica_catches_up(pod, committed, timeout=30)
        before = level0_keys(pod)
        fwd.cut()
        for i in range(100, 100 + OUTAGE_COMMITS):
            committed += commit_rows(app, i, 1)
            time.sleep(1)
        paused = sup.count("uploads_paused")
        fwd.restore()
        replica_catches_up(pod, committed, timeout=45)
        uploaded = level0_keys(pod) - before
        committed += commit_rows(app, 1000, 5)  # and replication goes on after it
        replica_catches_up(pod, committed, timeout=30)
        app.close()
        starts = sup.count("litestream_started")
        rc = sup.terminate()
    # before the pause (seen within a probe interval + 3 s, later on a loaded machine) a file a
    # second, then one for the rest; without the pause one for each of the 24 commits
    assert len(uploaded) <= 16, f"{len(uploaded)} level-0 files for {OUTAGE_COMMITS} commits: {sorted(uploaded)}"
    assert paused >= 1, sup.output()
    assert starts == 1 and sup.count("catch_up_restart") == 0, "Litestream was restarted"
    assert rc == 0
    restore_and_compare(pod, committed)


def test_shutdown_while_paused_uploads_everything_or_says_it_could_not(pod: Pod) -> None:
    """Invariant: exit 0 only with every committed row in the replica. SIGTERM lands while the
    databases are closed in Litestream: once with S3 back (its return not yet caught up: the final
    upload must cover the paused database), once with S3 still away (exit 10)."""
    with pod.through_forwarder() as fwd:
        sup = pod.start_replicate("--lease-ttl", "150", "--shutdown-timeout", "20",
                                  env=pod.env(AWS_ENDPOINT_URL_STS=pod.bed.endpoint))
        sup.wait_ready()
        app = connect(pod.db())
        committed = commit_rows(app, 1, 10)
        replica_catches_up(pod, committed, timeout=30)
        fwd.cut()
        committed += commit_rows(app, 100, 10)
        sup.wait_for(lambda: sup.count("uploads_paused") == 1, 30, "the pause")
        committed += commit_rows(app, 200, 10)
        app.close()
        fwd.restore()  # and SIGTERM before the probe sees it back
        rc = sup.terminate()
    assert rc == 0, sup.output()
    restore_and_compare(pod, committed)

    with pod.through_forwarder() as fwd:
        sup = pod.start_replicate("--lease-ttl", "150", "--shutdown-timeout", "8",
                                  env=pod.env(AWS_ENDPOINT_URL_STS=pod.bed.endpoint))
        sup.wait_ready()
        committed += commit_rows(pod.db(), 300, 5)
        replica_catches_up(pod, committed, timeout=30)
        fwd.cut()
        commit_rows(pod.db(), 400, 5)
        sup.wait_for(lambda: sup.count("uploads_paused") == 1, 30, "the pause")
        rc = sup.terminate()
    assert rc == 10, sup.output()
