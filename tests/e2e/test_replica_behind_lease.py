"""Review finding: restore believes a replica that is behind what its own lease says it held.

The lease body records `replica_txid`, the newest transaction a holder saw confirmed in the
replica (carried from holder to holder; written at every renewal and at release). Restore uses it
only when the prefix is *empty* (exit 18). A prefix that lost its newest objects but not all of
them (a multi-site RGW / MinIO site-replication zone that lags, a bucket put back from a backup, a
cleanup that removed the newest level) is restored as it is: exit 0, the app starts on stale data,
and Litestream then makes that stale state the replica's head. The lease proves it is stale.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.bed.pod import Pod, connect, row_ids
from tests.bed.replicas import commit_rows, forget_local, replica_catches_up, role_s3

pytestmark = pytest.mark.bed
LTX = re.compile(r"/(?P<level>[0-9a-f]{4})/(?P<min>[0-9a-f]{16})-(?P<max>[0-9a-f]{16})\.ltx$")


def test_restore_never_starts_the_app_behind_the_position_its_lease_recorded(pod: Pod) -> None:
    """Invariant: restore exit 0 implies the restored database holds every transaction the lease
    records as confirmed in the replica."""
    sup = pod.start_replicate()
    sup.wait_ready()
    app = connect(pod.db())
    committed: list[int] = []
    for batch in range(4):  # a few transactions in the replica, each uploaded before the next
        committed += commit_rows(app, 1 + 100 * batch, 10)
        replica_catches_up(pod, committed, timeout=30)
    app.close()
    assert sup.terminate() == 0, sup.output()[-3000:]

    s3, bucket = role_s3(pod), pod.bed.role.bucket
    prefix = f"{pod.prefix}/app.db"
    lease = json.loads(s3.get_object(Bucket=bucket, Key=f"{prefix}.lease")["Body"].read())
    recorded = int(lease["replica_txid"])
    assert recorded > 1, lease

    # The replica loses its newest transaction (every level), as a lagging zone or an older copy shows it.
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/")
            for o in page.get("Contents", [])]
    newest = [k for k in keys if (m := LTX.search(k)) and int(m["max"], 16) >= recorded]
    assert newest and len(newest) < len(keys), keys
    s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in newest]})

    forget_local(pod.db())
    run = pod.run("restore")
    if run.returncode == 0:
        missing = sorted(set(committed) - set(row_ids(pod.db())))
        assert not missing, (f"restore exit 0 on a replica behind its lease's replica_txid {recorded:016x}: the app "
                             f"starts without {len(missing)} committed rows (first {missing[:5]})")
