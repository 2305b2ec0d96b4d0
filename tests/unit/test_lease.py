"""The lease protocol's decisions, MinIO's recorded 412, and a store that ignores conditional
writes (the one fault no real part here produces: a forwarder stripping If-Match breaks SigV4)."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from supervisor.core.errors import LeaseConflict, LeaseUnsupported
from supervisor.identity import s3
from supervisor.identity.credentials import Credentials
from supervisor.litestream.config import Replica
from supervisor.replica.lease import Identity, LeaseBody, LeaseStore, Observed
from supervisor.replica.leaseholder import judge
from supervisor.replica.tenure import fence_after
from tests.unit import recorded

ME = Identity("app-0", "prod", "uid-a", "inst-a")


def body(holder: str = "prod/app-1", uid: str | None = "uid-b", instance: str = "inst-b", ttl: float = 30,
         released: bool = False) -> LeaseBody:
    return LeaseBody(holder, uid, instance, 0, 0, ttl, released)


@pytest.mark.parametrize(("seen", "verdict"), [
    (Observed(None, None, 0), "free"),
    (Observed(body(), "e", 5), "held"),
    (Observed(body(), "e", 31), "expired"),  # judged by the server's clock: Date - Last-Modified
    (Observed(body(released=True), "e", 1), "released"),
    (Observed(body(uid="uid-a", instance="inst-old"), "e", 1), "mine"),  # the sidecar adopts its restore's lease
    (Observed(body(holder="prod/app-0", uid=None, instance="inst-old"), "e", 1), "held"),  # same name, no UID:
    # a StatefulSet's replacement pod has the old one's name; only the UID proves it is the same pod
])
def test_judge(seen: Observed, verdict: str) -> None:
    assert judge(seen, ME) == verdict


def test_fencing_leaves_a_margin_before_the_ttl() -> None:
    assert fence_after(30) == 24 and fence_after(10) == 5 and fence_after(6) == 3
    assert all(fence_after(t) < t for t in (3, 10, 30, 300))


def test_an_unreadable_lease_object_is_held_not_free() -> None:
    assert LeaseBody.decode(b"{not json").holder.startswith("unknown")
    assert judge(Observed(LeaseBody.decode(b"garbage"), "e", 1), ME) == "held"


def creds() -> Credentials:
    now = time.time()
    return Credentials("EXAMPLEACCESSKEY0001", "example-secret-key-0001", "example-session-token-0001", now + 900, now)


def test_minio_precondition_failed_is_a_conflict() -> None:
    with recorded.serve() as recorder:
        r = Replica("example-bucket", "app.db", recorder.url, "us-east-1", True)
        client = s3.s3_client(creds(), r, ca_bundle=None, timeout_seconds=3)
        recorder.answer = recorded.load("s3-error.PreconditionFailed.xml")
        store = LeaseStore(lambda: client, r)
        with pytest.raises(LeaseConflict, match="412"):
            store.write(body(), if_match='"abc"')
        headers = recorder.requests[-1][0]
        assert headers.get("If-Match") == "abc"  # unquoted: RGW 16.2 refuses a quoted ETag that matches
        with pytest.raises(LeaseConflict):
            store.write(body())
        assert recorder.requests[-1][0].get("If-None-Match") == "*"


@contextmanager
def careless_s3() -> Iterator[str]:
    """An S3 that stores objects and ignores If-Match / If-None-Match."""
    objects: dict[str, bytes] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            objects[self.path] = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(200)
            self.send_header("ETag", f'"{len(objects[self.path]):032x}"')
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_store_that_ignores_conditional_writes_is_refused() -> None:
    with careless_s3() as url:
        r = Replica("bucket", "apps/app.db", url, "us-east-1", True)
        client = s3.s3_client(creds(), r, ca_bundle=None, timeout_seconds=3)
        with pytest.raises(LeaseUnsupported) as e:
            LeaseStore(lambda: client, r).check_conditional_writes(body())
    message = str(e.value)
    assert "If-None-Match" in message and "--lease off" in message and "\n" not in message
