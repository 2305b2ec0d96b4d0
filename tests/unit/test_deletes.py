"""The batch-delete check (identity/deletes.py): how each answer of the store is read. The real
store's answers (RGW 16 refusing every key under a session policy, and accepting without one) are
in tests/e2e/test_scope.py; these are the answers the bed cannot give on demand."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from supervisor.core.errors import Unreachable
from supervisor.identity import deletes, scope
from supervisor.litestream.config import Database, Replica

DB = Database(Path("/data/app.db"), Replica("bucket", "apps/app.db", "http://127.0.0.1:1", "us-east-1", True),
              Path("/data/.app.db-litestream"))


class Store:
    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.asked: list[dict[str, Any]] = []

    def delete_objects(self, **kw: Any) -> Any:
        self.asked.append(kw)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def client_error(status: int, code: str) -> ClientError:
    return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "DeleteObjects")


def test_one_key_under_the_replica_that_nothing_writes_is_asked_for() -> None:
    store = Store({"Deleted": [{"Key": "apps/app.db/.litestream-supervisor-delete-check"}]})
    assert deletes.refused(store, DB) is None
    (asked,) = store.asked
    assert asked["Bucket"] == "bucket"
    assert asked["Delete"]["Objects"] == [{"Key": "apps/app.db/.litestream-supervisor-delete-check"}]
    assert not asked["Delete"]["Quiet"]  # a refused key must come back, not be left out


@pytest.mark.parametrize(("answer", "code"), [
    ({"Errors": [{"Key": "k", "Code": "AccessDenied", "Message": "AccessDenied"}]}, "AccessDenied"),
    (client_error(403, "AccessDenied"), "AccessDenied"),
    (client_error(401, ""), "401"),
])
def test_a_refusal_of_the_key_or_of_the_request_is_a_refusal(answer: Any, code: str) -> None:
    refusal = deletes.refused(Store(answer), DB)
    assert refusal is not None and refusal.code == code
    assert refusal.where() == "s3://bucket/apps/app.db/.litestream-supervisor-delete-check"


@pytest.mark.parametrize("answer", [
    client_error(503, "SlowDown"), client_error(500, "InternalError"),
    EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
    # 403s about the request, not the permission: no reason to widen the credentials
    client_error(403, "RequestTimeTooSkewed"), client_error(403, "SignatureDoesNotMatch"),
    client_error(403, "InvalidAccessKeyId"), client_error(400, "ExpiredToken"),
    # throttling and conflicts, and a 400 about our own request (a checksum header the store wants)
    client_error(429, "TooManyRequests"), client_error(409, "OperationAborted"),
    client_error(400, "InvalidRequest"), client_error(400, "MalformedXML"),
    # a 403 that is no S3 permission answer (a proxy's own page)
    client_error(403, "RequestTimeTooSkewed"), client_error(403, "Forbidden by gateway"),
    # a key the store failed on, not refused
    {"Errors": [{"Key": "k", "Code": "InternalError"}]}, {"Errors": [{"Key": "k", "Code": "SlowDown"}]},
])
def test_no_answer_about_the_permission_is_not_a_refusal(answer: Any) -> None:
    """(A hostile review: a skewed clock or a busy store was read as a refusal and widened the
    credentials.)"""
    with pytest.raises(Unreachable, match="batch-delete check"):
        deletes.refused(Store(answer), DB)


@pytest.mark.parametrize(("answer", "code"), [
    (client_error(501, "NotImplemented"), "NotImplemented"), (client_error(404, "NoSuchBucket"), "NoSuchBucket"),
    (client_error(405, "MethodNotAllowed"), "MethodNotAllowed"),
])
def test_a_store_that_cannot_batch_delete_is_said_to_and_is_no_policy_matter(answer: Any, code: str) -> None:
    """(A hostile review: these were logged as "unchecked" at info, while the replica would grow.)"""
    refusal = deletes.refused(Store(answer), DB)
    assert refusal is not None and refusal.code == code and not refusal.denied
    assert f"answered {code}" in refusal.explain() and "session-policy" not in refusal.explain()


@pytest.mark.parametrize("answer", [{"Errors": [{"Key": "k", "Code": "NoSuchKey"}]}, client_error(404, "NoSuchKey")])
def test_a_key_already_absent_is_deleted(answer: Any) -> None:
    assert deletes.refused(Store(answer), DB) is None


def test_the_fix_named_depends_on_whether_a_session_policy_was_in_force() -> None:
    refusal = deletes.Refusal("bucket", "k", "AccessDenied")
    assert "--session-policy auto or off" in refusal.explain()
    refusal.under_policy = False
    assert "s3:DeleteObject on arn:aws:s3:::bucket" in refusal.explain()


def test_one_probe_per_bucket() -> None:
    other = Database(Path("/data/b.db"), Replica("bucket", "apps/b.db", None, "us-east-1", True), Path("/m"))
    third = Database(Path("/data/c.db"), Replica("other", "c.db", None, "us-east-1", True), Path("/m"))
    assert deletes.one_per_bucket([DB, other, third]) == [DB, third]


def test_the_session_policy_names_the_bucket_for_batch_deletes_and_keys_for_the_rest() -> None:
    """RGW checks s3:DeleteObject on the bucket before each key of a DeleteObjects."""
    import json

    policy = json.loads(scope.session_policy([DB]) or "{}")
    objects = next(s for s in policy["Statement"] if "s3:DeleteObject" in s["Action"])
    assert "arn:aws:s3:::bucket" in objects["Resource"]
    assert "arn:aws:s3:::bucket/apps/app.db/*" in objects["Resource"]
    read_only = json.loads(scope.session_policy([DB], read_only=True) or "{}")
    assert all("arn:aws:s3:::bucket" not in s["Resource"] for s in read_only["Statement"]
               if "s3:GetObject" in s["Action"])


OTHER = Database(Path("/data/b.db"), Replica("other", "b.db", "http://127.0.0.1:1", "us-east-1", True),
                 Path("/data/.b.db-litestream"))
# How a bucket's store answers a batch delete: under the session policy, and without it.
RGW16 = ("AccessDenied", None)  # refuses every key under any session policy, takes them without
ROLE = ("AccessDenied", "AccessDenied")  # the role itself forbids it
CANNOT = ("NotImplemented", "NotImplemented")  # no DeleteObjects at all
ACCEPTS = (None, None)


def service_with(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str, stores: dict[str, Any], *,
                 exchange_fails: bool = False, store_gone_after: bool = False,
                 narrowing_fails: bool = False) -> tuple[Any, list[str | None]]:
    """A CredentialService before Litestream starts, its replicas in the buckets of `stores`, each
    answering as its (under the policy, without it) pair says. `exchanged`: the policy each
    exchange was sent with."""
    from supervisor.core import settings
    from supervisor.core.errors import CredentialsRefused
    from supervisor.core.state import State
    from supervisor.identity.service import CredentialService
    from supervisor.litestream.config import LitestreamConfig

    s = settings.build({"session_policy": mode}, {"AWS_ROLE_ARN": "arn:r",
                                                  "AWS_WEB_IDENTITY_TOKEN_FILE": str(tmp_path / "token")})
    dbs = tuple(db for db in (DB, OTHER) if db.replica.bucket in stores)
    service = CredentialService(s, State(), LitestreamConfig(tmp_path / "litestream.yml", {}, dbs))
    exchanged: list[str | None] = []

    async def exchange(reason: str, budget: Any = None, *, refresh: bool = True) -> None:
        assert not refresh  # trading the same token again at start is no refresh
        exchanged.append(service.keeper.policy)
        if exchange_fails or (narrowing_fails and len(exchanged) == 2):
            raise CredentialsRefused("STS refused: AccessDenied")

    monkeypatch.setattr(service.keeper, "exchange", exchange)
    monkeypatch.setattr(service, "s3", lambda db: object())

    def refused(client: Any, db: Database) -> deletes.Refusal | None:
        if exchanged and store_gone_after:
            raise Unreachable("the batch-delete check got no answer")
        code = stores[db.replica.bucket][0 if service.keeper.policy is not None else 1]
        return None if code is None else deletes.Refusal(db.replica.bucket, "k", code,
                                                         denied=code == "AccessDenied")

    monkeypatch.setattr(deletes, "refused", refused)
    return service, exchanged


def service_on_rgw16(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str, *, role_refuses: bool = False,
                     code: str = "", **kw: Any) -> tuple[Any, list[str | None]]:
    store = ROLE if role_refuses else CANNOT if code == "NotImplemented" else RGW16
    return service_with(tmp_path, monkeypatch, mode, {"bucket": store}, **kw)


def check(service: Any) -> Any:
    import asyncio

    from supervisor.core.budget import Budget

    return asyncio.run(deletes.settle(service, Budget(5)))


def test_auto_trades_again_without_the_policy_where_the_store_refuses_under_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    service, exchanged = service_on_rgw16(tmp_path, monkeypatch, "auto")
    assert service.keeper.policy is not None
    assert check(service) == deletes.Settled([], dropped=True)
    assert exchanged == [None] and service.keeper.policy is None


def test_on_keeps_the_policy_and_says_what_it_costs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    service, exchanged = service_on_rgw16(tmp_path, monkeypatch, "on")
    settled = check(service)
    (refusal,) = settled.refusals
    assert exchanged == [] and service.keeper.policy is not None and not settled.dropped
    assert "--session-policy auto" in refusal.explain()


def test_a_failed_exchange_without_the_policy_keeps_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    service, exchanged = service_on_rgw16(tmp_path, monkeypatch, "auto", exchange_fails=True)
    policy = service.keeper.policy
    settled = check(service)
    (refusal,) = settled.refusals
    assert exchanged == [None] and service.keeper.policy == policy and not settled.dropped
    assert refusal.under_policy
    # (a hostile review: it told an auto user to "set --session-policy auto")
    assert "did not complete (STS refused: AccessDenied)" in refusal.explain()
    assert "set --session-policy auto" not in refusal.explain()


def test_a_store_gone_after_the_wider_exchange_narrows_the_credentials_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    service, exchanged = service_on_rgw16(tmp_path, monkeypatch, "auto", store_gone_after=True)
    policy = service.keeper.policy
    settled = check(service)
    assert exchanged == [None, policy] and service.keeper.policy == policy and not settled.dropped
    (refusal,) = settled.refusals
    assert "did not complete" in refusal.explain()


def test_narrowing_that_fails_is_left_to_the_keepers_loop_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """(A hostile review: with the check's budget spent the narrowing exchange failed at once,
    silently, and the role's whole policy stayed in use until the next refresh, ~45 min.)"""
    service, exchanged = service_on_rgw16(tmp_path, monkeypatch, "auto", store_gone_after=True,
                                          narrowing_fails=True)
    policy = service.keeper.policy
    check(service)
    assert exchanged == [None, policy] and service.keeper.policy == policy
    assert service.keeper._wake.is_set() and service.keeper._wake_reason == "session_policy_restored"


def test_a_store_that_cannot_batch_delete_keeps_the_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Wider credentials cannot help a store without DeleteObjects: no second exchange."""
    service, exchanged = service_on_rgw16(tmp_path, monkeypatch, "auto", code="NotImplemented")
    settled = check(service)
    (refusal,) = settled.refusals
    assert exchanged == [] and service.keeper.policy is not None
    assert "answered NotImplemented" in refusal.explain()


def test_a_role_that_refuses_too_is_named_as_what_to_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    service, exchanged = service_on_rgw16(tmp_path, monkeypatch, "auto", role_refuses=True)
    policy = service.keeper.policy
    settled = check(service)
    (refusal,) = settled.refusals
    assert not refusal.under_policy and not settled.dropped
    # wider credentials bought nothing: narrowed again
    assert exchanged == [None, policy] and service.keeper.policy == policy
    assert "in the role's policy" in refusal.explain()


def test_off_never_sends_a_policy_and_asks_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    service, exchanged = service_on_rgw16(tmp_path, monkeypatch, "off")
    assert service.keeper.policy is None and check(service) == deletes.Settled([]) and exchanged == []


@pytest.mark.parametrize(("stores", "dropped", "left"), [
    # (a hostile review: the first bucket's answer ended the check, the second's went unseen)
    ({"bucket": CANNOT, "other": RGW16}, True, {("bucket", "NotImplemented")}),
    ({"bucket": RGW16, "other": ROLE}, True, {("other", "AccessDenied")}),
    ({"bucket": ROLE, "other": ROLE}, False, {("bucket", "AccessDenied"), ("other", "AccessDenied")}),
    ({"bucket": ACCEPTS, "other": RGW16}, True, set()),
    ({"bucket": ACCEPTS, "other": CANNOT}, False, {("other", "NotImplemented")}),
])
def test_every_bucket_is_asked_and_the_policy_dropped_where_that_lets_more_delete(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stores: dict[str, Any], dropped: bool,
        left: set[tuple[str, str]]) -> None:
    service, _ = service_with(tmp_path, monkeypatch, "auto", stores)
    settled = check(service)
    assert settled.dropped == dropped and (service.keeper.policy is None) == dropped
    assert {(r.bucket, r.code) for r in settled.refusals} == left
