"""One writer per replica: a lease object beside the replica, taken with conditional writes only.

The object is `<path>.lease`, beside (not inside) the replica prefix `<path>/`, so neither
Litestream nor the layout detection ever sees it. Its body names the holder; its age is judged
by the server's clock (the GET's Date header against the object's Last-Modified), never by
comparing two pods' clocks.

- acquire: GET; absent -> PUT If-None-Match: *; mine (same pod UID: the replicate sidecar adopting
  its own pod's restore), released or expired -> PUT If-Match: <etag>; otherwise wait and re-GET.
- renew: PUT If-Match after 80-100% of TTL/3; 412 means another pod took it: lost.
- fence: with no renewal confirmed for TTL minus a safety margin, this pod can no longer prove it
  holds the lease: the caller stops uploading until a renewal succeeds again.
- release: PUT If-Match with `released: true`, only after the final position is confirmed.

ETags are sent unquoted: Ceph RGW 16.2 answers 412 to a quoted If-Match even when it matches;
MinIO strips quotes. A store that ignores conditional writes would make all of this a lie: a
probe at start (a conditional write that must fail) refuses such a store.
"""

from __future__ import annotations

import json
import secrets as random_secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from botocore.exceptions import ClientError

from supervisor import __version__
from supervisor.core.errors import LeaseConflict, LeaseHeld, LeaseUnsupported, OtherWorkload, SupervisorError
from supervisor.identity.sts import server_time
from supervisor.litestream.config import Replica
from supervisor.replica import layout as replicas

DEFAULT_TTL_SECONDS = 30.0


@dataclass(frozen=True)
class Identity:
    """Who this process is: the pod (name, namespace, UID from the downward API), its workload
    (--workload, or None when not known exactly) and this run."""

    pod: str
    namespace: str | None
    pod_uid: str | None
    instance: str
    workload: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str], fallback_name: str, workload: str | None = None) -> Identity:
        pod = env.get("POD_NAME") or env.get("HOSTNAME") or fallback_name
        return cls(pod, env.get("POD_NAMESPACE") or None, env.get("POD_UID") or None,
                   random_secrets.token_hex(6), workload)

    @property
    def owner(self) -> str | None:
        """namespace/workload: who the replica belongs to (None when the workload is not known)."""
        if not self.workload:
            return None
        return f"{self.namespace}/{self.workload}" if self.namespace else self.workload

    @property
    def holder(self) -> str:
        return f"{self.namespace}/{self.pod}" if self.namespace else self.pod


@dataclass(frozen=True)
class LeaseBody:
    holder: str
    pod_uid: str | None
    instance: str
    acquired_at: float
    renewed_at: float
    ttl_seconds: float
    released: bool = False
    version: str = __version__
    # Whose replica this is (namespace/workload) and which database: a second workload on one prefix
    # is refused, not silently merged.
    owner: str | None = None
    database: str | None = None
    # The newest transaction any holder saw confirmed in the replica (carried over from holder to
    # holder): an empty prefix beside a lease that saw data is a deleted replica, not a fresh start.
    replica_txid: int = 0

    def encode(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def decode(cls, data: bytes) -> LeaseBody:
        try:
            raw = json.loads(data)
            return cls(holder=str(raw["holder"]), pod_uid=raw.get("pod_uid"), instance=str(raw["instance"]),
                       acquired_at=float(raw["acquired_at"]), renewed_at=float(raw["renewed_at"]),
                       ttl_seconds=float(raw["ttl_seconds"]), released=bool(raw.get("released")),
                       version=str(raw.get("version", "?")), owner=raw.get("owner") or None,
                       database=raw.get("database") or None, replica_txid=int(raw.get("replica_txid") or 0))
        except (ValueError, KeyError, TypeError):
            # Unreadable: treat it as held for one TTL by an unknown writer, never as free.
            return cls("unknown (unreadable lease object)", None, "?", 0, 0, DEFAULT_TTL_SECONDS)

    def describe(self) -> str:
        uid = f" uid {self.pod_uid}" if self.pod_uid else ""
        return f"{self.holder}{uid} (instance {self.instance})"


@dataclass(frozen=True)
class Observed:
    """One GET of the lease object."""

    body: LeaseBody | None  # None: absent
    etag: str | None
    age_seconds: float  # server Date minus Last-Modified (0 when absent)

    @property
    def remaining_seconds(self) -> float:
        return 0.0 if self.body is None else max(0.0, self.body.ttl_seconds - self.age_seconds)


def _etag(value: str) -> str:
    return value.strip('"')


class LeaseStore:
    """Blocking S3 calls on the lease object (run them in a thread)."""

    def __init__(self, client: Callable[[], Any], replica: Replica) -> None:
        self.client = client
        self.replica = replica
        self.key = replica.lease_key

    @property
    def location(self) -> str:
        return f"s3://{self.replica.bucket}/{self.key}"

    def _explain(self, error: Exception) -> SupervisorError:
        if isinstance(error, ClientError):
            status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            code = (error.response.get("Error") or {}).get("Code")
            if status == 412 or code == "PreconditionFailed":
                return LeaseConflict(f"{self.location}: changed by someone else (412 PreconditionFailed)")
        return replicas.explain(error, self.replica)

    def read(self) -> Observed:
        try:
            answer = self.client().get_object(Bucket=self.replica.bucket, Key=self.key)
        except ClientError as e:
            status = int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            if status == 404 and (e.response.get("Error") or {}).get("Code") in ("NoSuchKey", "404", None):
                return Observed(None, None, 0.0)
            raise self._explain(e) from None
        except Exception as e:  # noqa: BLE001 (explained)
            raise self._explain(e) from None
        if "LastModified" not in answer or "ETag" not in answer:
            raise replicas.not_s3(self.replica, "an object without ETag or Last-Modified")
        body = LeaseBody.decode(answer["Body"].read())
        now = server_time(answer.get("ResponseMetadata", {}).get("HTTPHeaders", {}))
        modified = answer["LastModified"].timestamp()
        age = (now if now is not None else time.time()) - modified
        return Observed(body, _etag(answer["ETag"]), age)

    def write(self, body: LeaseBody, *, if_match: str | None = None, key: str | None = None) -> str:
        """PUT with If-Match (replace) or If-None-Match: * (create); the new ETag, or LeaseConflict."""
        condition = {"IfMatch": _etag(if_match)} if if_match is not None else {"IfNoneMatch": "*"}
        try:
            answer = self.client().put_object(Bucket=self.replica.bucket, Key=key or self.key, Body=body.encode(),
                                              ContentType="application/json", **condition)
        except Exception as e:  # noqa: BLE001 (explained)
            raise self._explain(e) from None
        if "ETag" not in answer:
            raise replicas.not_s3(self.replica, "a write answered without an ETag")
        return _etag(answer["ETag"])

    def check_conditional_writes(self, body: LeaseBody, parallel: bool = True) -> None:
        """A store that ignores If-None-Match / If-Match would make the lease a lie: refuse it.
        On the probe object both conditional writes must fail: If-Match with an ETag it cannot
        have, and If-None-Match: * once it exists. They are sent at once (restore waits for this);
        only the very first probe of a bucket, which creates the object, takes a second round."""
        probe = self.replica.lease_probe_key

        def conditional(condition: dict[str, str]) -> SupervisorError | None:
            """None when refused as it must be; the error (or LeaseUnsupported) otherwise."""
            try:
                self.client().put_object(Bucket=self.replica.bucket, Key=probe, Body=body.encode(), **condition)
            except Exception as e:  # noqa: BLE001 (explained)
                explained = self._explain(e)
                return None if isinstance(explained, LeaseConflict) else explained
            header = "If-None-Match" if "IfNoneMatch" in condition else "If-Match"
            return LeaseUnsupported(
                f"--lease: {self.replica.endpoint or 'the S3 store'} ignored a conditional write ({header}) on "
                f"s3://{self.replica.bucket}/{probe}: it cannot guarantee one writer per replica; use a store "
                "that supports conditional writes, or --lease off (unsafe: overlapping pods can fork the replica)")

        # `parallel` (restore, where time counts): a daemon thread, as every blocking call here (an
        # abandoned call must not hold the process). The sidecar goes one by one: concurrent calls
        # leave a second pooled connection and thread arena resident for the pod's lifetime.
        bogus: list[SupervisorError | None] = []
        thread = threading.Thread(target=lambda: bogus.append(conditional({"IfMatch": "0" * 32})), daemon=True)
        if parallel:
            thread.start()
            create = conditional({"IfNoneMatch": "*"})
            thread.join()
        else:
            create = conditional({"IfNoneMatch": "*"})
            bogus.append(conditional({"IfMatch": "0" * 32}))
        if isinstance(create, LeaseUnsupported):  # it wrote: the probe object did not exist yet
            create = conditional({"IfNoneMatch": "*"})  # now it does: this one must be refused
        for outcome in (create, *bogus):
            if outcome is not None:
                raise outcome


def held_error(location: str, seen: Observed, waited: str) -> LeaseHeld:
    """Gave up waiting for a live holder: who holds it, how fresh, after how long (`waited`: the option)."""
    assert seen.body is not None
    return LeaseHeld(f"{location}: held by {seen.body.describe()}, renewed {seen.age_seconds:.0f}s "
                     f"before the last look (TTL {seen.body.ttl_seconds:g}s); gave up waiting after {waited}")


def other_workload_error(location: str, other: str, mine: str | None) -> OtherWorkload:
    return OtherWorkload(
        f"{location}: this replica belongs to {other} (its lease says so), not to {mine}; "
        "two workloads on one replica overwrite each other: give this one its own replica path, or take "
        f"the replica over on purpose with --adopt-replica-from {other}")
