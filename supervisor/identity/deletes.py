"""Can Litestream's retention delete with these credentials? One batch delete, tried at start.

Litestream removes expired files with DeleteObjects (POST ?delete, up to 1,000 keys a request),
never one by one. A store can take single deletes and refuse that: Ceph RGW 16 refuses every key
of a batch under any inline session policy. Litestream only logs it, every few seconds, and the
replica grows by a file per second of writes, for ever. So the sidecar asks the store itself
before Litestream starts: a DeleteObjects of one key under the replica's path that nothing ever
writes. It removes nothing; its answer says whether the retention's would go through.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from supervisor.core.budget import Budget
from supervisor.core.errors import SupervisorError, Unreachable
from supervisor.core.logs import get_logger
from supervisor.litestream.config import Database

if TYPE_CHECKING:
    from supervisor.identity.service import CredentialService

log = get_logger("service")
# Under the replica's path, where Litestream's retention deletes, but never one of its files.
PROBE_NAME = ".litestream-supervisor-delete-check"


# Answers that say nothing about the policy: the check could not tell (the next start asks again).
NOT_AN_ANSWER = frozenset({
    "RequestTimeTooSkewed", "SignatureDoesNotMatch", "InvalidAccessKeyId", "ExpiredToken", "InvalidToken",
    "TokenRefreshRequired", "RequestExpired", "RequestTimeout", "SlowDown", "InternalError", "ServiceUnavailable",
    "TooManyRequests", "Throttling", "ThrottlingException", "OperationAborted",
})
DENIED = frozenset({"AccessDenied", "AllAccessDisabled"})
# The store cannot take a batch delete there at all: no permission would change that.
CANNOT = frozenset({"NotImplemented", "NoSuchBucket", "MethodNotAllowed"})
ABSENT = "NoSuchKey"  # nothing there to delete is what a delete wants


@dataclass
class Refusal:
    bucket: str
    key: str
    code: str  # the store's word: AccessDenied, or what it said instead
    under_policy: bool = True  # asked with credentials narrowed by the session policy
    denied: bool = True  # a permission refusal (else the store cannot do it: NotImplemented, NoSuchBucket...)
    fix: str | None = None  # what to do, where the general advice does not fit

    def where(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def explain(self) -> str:
        if self.fix is not None:
            fix = self.fix
        elif not self.denied:
            fix = (f"the store answered {self.code} to a DeleteObjects under the replica's path: check that "
                   f"bucket {self.bucket} exists and that the store supports batch deletes")
        elif self.under_policy:
            fix = ("the store refuses them under the session policy (Ceph RGW 16 does under any): "
                   "set --session-policy auto or off")
        else:
            fix = f"allow s3:DeleteObject on arn:aws:s3:::{self.bucket} and on the replica's keys in the role's policy"
        return f"Litestream's retention cannot remove expired files, so the replica grows without end; {fix}"


def probe_key(db: Database) -> str:
    return f"{db.replica.path}/{PROBE_NAME}" if db.replica.path else PROBE_NAME


def one_per_bucket(databases: list[Database]) -> list[Database]:
    """The session policy and the role speak per bucket: one probe each is enough."""
    seen: dict[str, Database] = {}
    for db in databases:
        seen.setdefault(db.replica.bucket, db)
    return list(seen.values())


def refused(client: Any, db: Database) -> Refusal | None:
    """None when the store would delete under the replica's path; the refusal otherwise, of the
    whole request or of the key. Unreachable when it could not be asked."""
    key = probe_key(db)
    try:
        answer = client.delete_objects(Bucket=db.replica.bucket,
                                       Delete={"Objects": [{"Key": key}], "Quiet": False})
    except ClientError as e:
        status = int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        code = str((e.response.get("Error") or {}).get("Code") or status)
        return _judged(db, key, code, status)
    except BotoCoreError as e:
        raise Unreachable(f"s3://{db.replica.bucket}/{key}: the batch-delete check got no answer "
                          f"({type(e).__name__})") from None
    for error in answer.get("Errors") or []:
        refusal = _judged(db, key, str(error.get("Code") or "refused"), 0)
        if refusal is not None:
            return refusal
    return None


def _judged(db: Database, key: str, code: str, status: int) -> Refusal | None:
    """A refusal when the answer says Litestream's deletes cannot go through: a permission denied
    (AccessDenied, or a bare 401/403 with no S3 error), or a store that cannot batch delete there.
    Anything else (a clock, a signature, throttling, a 5xx, a 400 about our own request's headers)
    is no verdict: Unreachable."""
    if code == ABSENT:
        return None
    if code in DENIED or (status in (401, 403) and code == str(status)):
        return Refusal(db.replica.bucket, key, code)
    if code in CANNOT or status == 501:
        return Refusal(db.replica.bucket, key, code, denied=False)
    raise Unreachable(f"s3://{db.replica.bucket}/{key}: the batch-delete check was answered {code}")


@dataclass(frozen=True)
class Settled:
    refusals: list[Refusal]  # the refusals that stand: Litestream's retention cannot delete there
    dropped: bool = False  # the session policy was dropped so that it can


async def settle(service: CredentialService, budget: Budget) -> Settled:
    """Before Litestream starts: may its retention delete, in every bucket? Where the store denies
    it under the session policy, --session-policy auto trades the token again without it (the
    role's own policy, which rgw-setup keeps to the service account's prefix) and keeps that if it
    lets more buckets delete; `on` keeps the policy, and the warning. Never fails a start (no row
    is at risk); Unreachable when the store gives no verdict, OutOfTime past the budget."""
    keeper = service.keeper
    refusals = await _refusals(service, budget)
    under = keeper.policy is not None
    for refusal in refusals:
        refusal.under_policy = under
    dropped = False
    if under and not service.settings.strict_session_policy and any(r.denied for r in refusals):
        policy, keeper.policy = keeper.policy, None
        widened = False
        try:
            await keeper.exchange("session_policy_dropped", budget, refresh=False)
            widened = True
            without = await _refusals(service, budget)
        except SupervisorError as e:  # STS refused it, or the store stopped answering meanwhile
            for refusal in refusals:
                refusal.fix = (f"the check without the session policy did not complete ({e}); the next start "
                               "asks again (--session-policy off drops the policy)")
        else:
            for refusal in without:
                refusal.under_policy = False
            if denied(without) < denied(refusals):  # fewer buckets denied without it: keep that
                log.warning("session_policy_dropped", where=[r.where() for r in refusals if r.denied],
                            code=refusals[0].code,
                            detail="the store refuses batch deletes (DeleteObjects) under an inline session "
                                   "policy, as Ceph RGW 16 does under any; the credentials now carry the role's "
                                   "own policy so Litestream's retention can remove expired files "
                                   "(--session-policy on keeps it)")
                refusals, dropped = without, True
            else:
                refusals = without  # the role refuses too: wider credentials would buy nothing
        if not dropped:
            keeper.policy = policy
            if widened:  # narrowed again now; failing that, by the keeper's loop at once
                await _narrow(service)
    for refusal in refusals:
        log.warning("batch_delete_refused", where=refusal.where(), code=refusal.code, detail=refusal.explain())
    return Settled(refusals, dropped)


def denied(refusals: list[Refusal]) -> set[str]:
    return {r.bucket for r in refusals if r.denied}


async def _narrow(service: CredentialService) -> None:
    keeper = service.keeper
    try:  # a budget of its own: the check's may be spent (the reason it ended)
        await keeper.exchange("session_policy_restored", keeper.exchange_budget(), refresh=False)
    except SupervisorError as e:
        log.warning("session_policy_not_restored", error=str(e),
                    detail="the credentials carry the role's whole policy until the keeper's next exchange, "
                           "tried at once")
        keeper.exchange_soon("session_policy_restored")


async def _refusals(service: CredentialService, budget: Budget) -> list[Refusal]:
    """One probe per bucket, every bucket."""
    assert service.config is not None
    found = []
    for db in one_per_bucket(list(service.config.databases)):
        async with budget.limit(f"the batch-delete check on {db.replica.bucket}"):
            refusal = await asyncio.to_thread(refused, service.s3(db), db)
        if refusal is not None:
            found.append(refusal)
    return found
