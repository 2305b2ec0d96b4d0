"""What is really in the replica: its layout, its newest position, and S3 errors explained.

Litestream 0.5 writes LTX files `<path>/<level:04x>/<min:016x>-<max:016x>.ltx`; 0.3 wrote
`<path>/generations/<id>/{snapshots,wal}/...`. Anything else under the prefix means the prefix
is wrong or shared, and must never be mistaken for "no replica yet".
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from supervisor.core.errors import ExitCode, SupervisorError, Unreachable
from supervisor.core.redact import secrets
from supervisor.litestream.config import Database, Replica

LTX_NAME = re.compile(r"^(?P<min>[0-9a-f]{16})-(?P<max>[0-9a-f]{16})\.ltx$")
LTX_KEY = re.compile(r"^(?P<level>[0-9a-f]{4})/(?P<min>[0-9a-f]{16})-(?P<max>[0-9a-f]{16})\.ltx$")
V3_KEY = re.compile(r"^generations/[0-9a-f]{16}/(snapshots|wal)/")
# Temporary credentials that lapsed or were replaced: refresh, not misconfiguration.
STALE_CODES = frozenset({"InvalidAccessKeyId", "InvalidTokenId", "ExpiredToken", "TokenRefreshRequired"})
MAX_LISTED = 100_000


class StaleCredentials(SupervisorError):
    exit_code = ExitCode.CREDENTIALS_REFUSED


@dataclass(frozen=True)
class Layout:
    kind: str  # empty | ltx | v3 | unknown
    objects: int
    max_txid: int = 0
    unexpected: str | None = None  # an example key that is neither layout
    # How far an unbroken chain of LTX files from a snapshot (min txid 1) reaches: a restore past it
    # misses transactions (Litestream 0.5.17 restores whatever it finds, integrity check and all).
    restorable_to: int = 0
    # More than MAX_LISTED objects: the listing stopped there, so the newest transaction and the
    # chain are not known (nothing is concluded from them; Litestream's restore lists it all).
    truncated: bool = False

    @property
    def gap(self) -> str | None:
        """What is missing from an LTX replica, or None when it restores up to its newest file."""
        if self.kind != "ltx" or self.truncated or self.restorable_to >= self.max_txid:
            return None
        if self.restorable_to == 0:
            return "no snapshot to start from (no LTX file begins at transaction 1)"
        return (f"transactions after {self.restorable_to:016x} are missing up to the next file "
                f"(newest {self.max_txid:016x})")

    def describe(self) -> str:
        return {"empty": "empty (no replica yet)", "ltx": "Litestream 0.5 (LTX files)",
                "v3": "Litestream 0.3 (generations/)", "unknown": "not a Litestream replica"}[self.kind]


def not_s3(replica: Replica, what: str) -> Unreachable:
    """An endpoint answering, but not as S3 does (a console, a proxy's page): never an empty replica."""
    return Unreachable(f"{replica.location}: {replica.endpoint or 'S3'} answered with something that is not an S3 "
                       f"answer ({what}; check the replica's endpoint in litestream.yml or AWS_ENDPOINT_URL_S3: "
                       "MinIO's API port, not its console's)")


def explain(error: Exception, replica: Replica) -> SupervisorError:
    where = replica.location
    if isinstance(error, SupervisorError):
        return error
    if isinstance(error, (ResponseParserError, KeyError)):
        # botocore's parser quotes the body (it could hold anything): only its kind is said
        return not_s3(replica, type(error).__name__)
    if isinstance(error, ClientError):
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        code = (error.response.get("Error") or {}).get("Code") or f"HTTP {status}"
        if code in STALE_CODES:
            return StaleCredentials(f"{where}: S3 says {code}: the temporary credentials are no longer valid")
        if code in ("NoSuchBucket",) or (status == 404 and code in ("404", "HTTP 404", "NotFound")):
            return SupervisorError(f"{where}: bucket {replica.bucket!r} does not exist (create it, or fix "
                                   "'bucket' in litestream.yml)", exit_code=ExitCode.NO_SUCH_BUCKET)
        if status == 403 or code == "AccessDenied":
            return SupervisorError(f"{where}: access denied ({code}): the role's policy must allow "
                                   "s3:ListBucket, s3:GetObject and s3:PutObject on this bucket and prefix (Ceph "
                                   "RGW also answers AccessDenied for lapsed credentials: a fresh exchange was "
                                   "tried first; on RGW, `rgw-setup` writes the policy)",
                                   exit_code=ExitCode.ACCESS_DENIED)
        if status >= 500 or status == 429 or code in ("SlowDown", "ServiceUnavailable", "InternalError"):
            return Unreachable(f"{where}: S3 is not available ({code})")
        return SupervisorError(f"{where}: S3 refused the listing ({code})", exit_code=ExitCode.ACCESS_DENIED)
    if isinstance(error, BotoCoreError):
        return Unreachable(f"{where}: S3 unreachable: {secrets.redact(str(error))}")
    return SupervisorError(f"{where}: {type(error).__name__}: {secrets.redact(str(error))}")


def chain_end(spans: list[tuple[int, int]]) -> int:
    """How far LTX files (min, max txid) reach from a snapshot without a gap (a pure function)."""
    covered = max((hi for lo, hi in spans if lo == 1), default=0)
    while covered:
        further = max((hi for lo, hi in spans if lo <= covered + 1 and hi > covered), default=None)
        if further is None:
            break
        covered = further
    return covered


def classify_keys(keys: list[str], prefix: str) -> Layout:
    ltx = v3 = 0
    max_txid = 0
    unexpected = None
    spans: list[tuple[int, int]] = []
    for key in keys:
        rel = key[len(prefix):]
        m = LTX_KEY.match(rel)
        if m:
            ltx += 1
            max_txid = max(max_txid, int(m["max"], 16))
            spans.append((int(m["min"], 16), int(m["max"], 16)))
        elif V3_KEY.match(rel):
            v3 += 1
        elif unexpected is None:
            unexpected = key
    if not keys:
        return Layout("empty", 0)
    # 0.5 replicating over a 0.3 replica starts a new LTX history: the LTX files are newest.
    if ltx:
        return Layout("ltx", len(keys), max_txid, unexpected, chain_end(spans))
    if v3:
        return Layout("v3", len(keys), 0, unexpected)
    return Layout("unknown", len(keys), 0, unexpected)


def pages(client: Any, replica: Replica, **kwargs: Any) -> Iterator[dict[str, Any]]:
    """ListObjectsV2 pages; an answer without IsTruncated (which every S3 listing carries) is not
    S3's: botocore reads an HTML page as an empty listing, which restore would take for an empty
    replica and start the app on an empty database."""
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=replica.bucket, **kwargs):
        if "IsTruncated" not in page:
            raise not_s3(replica, "a listing without IsTruncated")
        yield page


def layout(client: Any, replica: Replica) -> Layout:
    """List the prefix (blocking) and name what is there."""
    prefix = replica.prefix
    keys: list[str] = []
    truncated = False
    try:
        for page in pages(client, replica, Prefix=prefix):
            keys.extend(o["Key"] for o in page.get("Contents", []))
            if len(keys) >= MAX_LISTED and page.get("IsTruncated"):
                truncated = True
                break
    except Exception as e:  # noqa: BLE001 (explained and re-raised)
        raise explain(e, replica) from None
    found = classify_keys(keys, prefix)
    return replace(found, truncated=True) if truncated else found


def newest_ltx_key(client: Any, replica: Replica) -> str | None:
    """The key of the LTX file with the highest transaction ID, any level (blocking)."""
    prefix = replica.prefix
    best: tuple[int, str] | None = None
    try:
        for page in pages(client, replica, Prefix=prefix):
            for obj in page.get("Contents", []):
                m = LTX_KEY.match(obj["Key"][len(prefix):])
                if m and (best is None or int(m["max"], 16) > best[0]):
                    best = (int(m["max"], 16), obj["Key"])
    except Exception as e:  # noqa: BLE001 (explained)
        raise explain(e, replica) from None
    return best[1] if best else None


@dataclass(frozen=True)
class RemotePosition:
    txid: int
    last_modified: float | None
    key: str | None


def remote_position(client: Any, replica: Replica, after_key: str | None = None) -> RemotePosition | None:
    """The newest level-0 LTX in the replica, listing only keys after `after_key` (blocking)."""
    prefix = f"{replica.prefix}0000/"
    kwargs: dict[str, Any] = {"Prefix": prefix}
    if after_key:
        kwargs["StartAfter"] = after_key
    best: RemotePosition | None = None
    try:
        for page in pages(client, replica, **kwargs):
            for obj in page.get("Contents", []):
                m = LTX_NAME.match(obj["Key"][len(prefix):])
                if m and (best is None or int(m["max"], 16) >= best.txid):
                    best = RemotePosition(int(m["max"], 16), obj["LastModified"].timestamp(), obj["Key"])
    except Exception as e:  # noqa: BLE001
        raise explain(e, replica) from None
    return best


@dataclass(frozen=True)
class LocalPosition:
    txid: int
    unsent_since: float | None  # mtime of the oldest local LTX newer than the remote position


def local_position(db: Database, remote_txid: int) -> LocalPosition:
    """The newest local LTX, and since when local LTX files have waited for upload (OSError if unreadable)."""
    directory = db.meta_dir / "ltx" / "0"
    txid = 0
    oldest_unsent: float | None = None
    try:
        entries = list(directory.iterdir())
    except FileNotFoundError:
        return LocalPosition(0, None)
    for entry in entries:
        m = LTX_NAME.match(entry.name)
        if not m:
            continue
        max_txid = int(m["max"], 16)
        txid = max(txid, max_txid)
        if max_txid > remote_txid:
            try:
                mtime = entry.stat().st_mtime
            except FileNotFoundError:
                continue
            oldest_unsent = mtime if oldest_unsent is None else min(oldest_unsent, mtime)
    return LocalPosition(txid, oldest_unsent)


def lag_seconds(local: LocalPosition, now: float | None = None) -> float:
    if local.unsent_since is None:
        return 0.0
    return max(0.0, (time.time() if now is None else now) - local.unsent_since)
