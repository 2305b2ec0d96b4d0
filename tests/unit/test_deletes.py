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


@pytest.mark.parametrize("answer", [client_error(503, "SlowDown"),
                                    EndpointConnectionError(endpoint_url="http://127.0.0.1:1")])
def test_no_answer_is_not_a_refusal(answer: Exception) -> None:
    with pytest.raises(Unreachable, match="batch-delete check"):
        deletes.refused(Store(answer), DB)


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
