"""The first STS exchange sent ahead (supervisor/identity/headstart.py): one exchange per start, its answer
taken only for the identical request, its failures reported as the keeper's own. Against MinIO's
recorded answers over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.httpsession import get_cert_path

from supervisor.core import settings
from supervisor.core.budget import Budget
from supervisor.core.errors import CredentialsRefused, TokenError, Unreachable
from supervisor.core.state import State
from supervisor.identity import headstart, stsquery
from supervisor.identity.service import CredentialService
from supervisor.litestream import config as lsconfig
from tests.unit import recorded
from tests.unit.test_token import fake_jwt

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def sts() -> Iterator[recorded.Recorder]:
    with recorded.serve() as recorder:
        recorder.answer = recorded.ok_answer()
        yield recorder


@pytest.fixture(autouse=True)
def nothing_pending() -> Iterator[None]:
    headstart._pending = None
    yield
    headstart._pending = None


def write_token(path: Path, sub: str = "system:serviceaccount:a:b") -> None:
    path.write_text(fake_jwt(sub=sub, aud="sts.amazonaws.com", exp=time.time() + 600))


def setup(tmp_path: Path, url: str) -> settings.Settings:
    (tmp_path / "litestream.yml").write_text(
        f"dbs:\n  - path: {tmp_path}/app.db\n    replica:\n      type: s3\n      bucket: b\n"
        f"      path: app\n      endpoint: {url}\n      force-path-style: true\n")
    write_token(tmp_path / "token")
    env = {"AWS_ROLE_ARN": "arn:minio:iam:::role/x", "AWS_WEB_IDENTITY_TOKEN_FILE": str(tmp_path / "token"),
           "POD_NAME": "pod-0"}
    return settings.build({"config": str(tmp_path / "litestream.yml")}, env)


def first_exchange(s: settings.Settings) -> tuple[CredentialService, object]:
    service = CredentialService(s, State(), lsconfig.load_for(s))
    try:
        return service, asyncio.run(service.keeper.exchange("start", Budget(10)))
    except Exception as e:  # the caller inspects it
        return service, e


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_requests(recorder: recorded.Recorder, n: int) -> None:
    deadline = time.monotonic() + 10
    while len(recorder.requests) < n and time.monotonic() < deadline:
        time.sleep(0.01)


def test_the_keeper_takes_the_answer_sent_ahead_as_its_one_exchange(sts: recorded.Recorder, tmp_path: Path) -> None:
    s = setup(tmp_path, sts.url)
    headstart.begin(s)
    pending = headstart._pending
    assert pending is not None
    assert (tmp_path / "token").read_text() not in repr(pending)  # nothing that shows it carries the token
    wait_for_requests(sts, 1)
    assert len(sts.requests) == 1  # on the wire before any keeper exists

    service, creds = first_exchange(s)
    assert getattr(creds, "access_key_id", None) == "EXAMPLEACCESSKEY0001"
    assert len(sts.requests) == 1  # the keeper sent nothing of its own
    assert service.keeper._client is None  # nor built an STS client: botocore only read the answer
    assert service.keeper.state.sts_requests["ok"] == 1
    assert headstart._pending is None  # taken once

    # the request sent ahead is the one the keeper would send: role, session name, session policy
    _, form = sts.requests[0]
    assert form["RoleArn"] == ["arn:minio:iam:::role/x"] and form["RoleSessionName"] == ["pod-0"]
    assert form["Policy"] == [service.keeper.policy] and service.keeper.policy


def test_a_rotated_token_is_sent_again_rather_than_answered_for_the_old_one(sts: recorded.Recorder,
                                                                           tmp_path: Path) -> None:
    s = setup(tmp_path, sts.url)
    headstart.begin(s)
    wait_for_requests(sts, 1)
    write_token(tmp_path / "token", sub="system:serviceaccount:a:rotated")
    _, creds = first_exchange(s)
    assert getattr(creds, "access_key_id", None) == "EXAMPLEACCESSKEY0001"
    assert len(sts.requests) == 2
    assert sts.requests[1][1]["WebIdentityToken"] == [(tmp_path / "token").read_text()]


def test_a_refusal_sent_ahead_is_the_keepers_own_refusal(sts: recorded.Recorder, tmp_path: Path) -> None:
    sts.answer = recorded.load("sts-error.AccessDenied.xml")
    s = setup(tmp_path, sts.url)
    _, without = first_exchange(s)
    headstart.begin(s)
    service, ahead = first_exchange(s)
    assert isinstance(without, CredentialsRefused) and isinstance(ahead, CredentialsRefused)
    assert str(ahead) == str(without)
    assert service.keeper.state.sts_requests["refused"] == 1
    assert service.keeper.state.last_sts_error == str(without)
    assert len(sts.requests) == 2  # one each: the keeper did not send a second after the refusal


def test_a_head_start_that_cannot_begin_leaves_the_error_to_the_command(sts: recorded.Recorder,
                                                                        tmp_path: Path) -> None:
    s = setup(tmp_path, sts.url)
    (tmp_path / "token").unlink()
    headstart.begin(s)  # no exception: the command reports it
    assert headstart._pending is None and sts.requests == []
    _, error = first_exchange(s)
    assert isinstance(error, TokenError) and "token" in str(error)


def test_a_proxy_in_the_environment_leaves_the_request_to_botocore(sts: recorded.Recorder, tmp_path: Path) -> None:
    s = setup(tmp_path, sts.url)
    s = dataclasses.replace(s, environment={**s.environment, "HTTPS_PROXY": "http://127.0.0.1:9"})
    headstart.begin(s)
    assert headstart._pending is None and sts.requests == []
    assert not stsquery.proxied({"NO_PROXY": "*"}) and stsquery.proxied({"http_proxy": "http://p:3128"})


def test_a_request_sent_ahead_that_got_no_answer_is_the_keepers_own_failure(tmp_path: Path) -> None:
    s = setup(tmp_path, f"http://127.0.0.1:{free_port()}")  # nothing listens there
    _, without = first_exchange(s)
    headstart.begin(s)
    service, ahead = first_exchange(s)
    assert isinstance(without, Unreachable) and isinstance(ahead, Unreachable)
    assert str(ahead) == str(without)  # botocore's words, not the head start's
    assert service.keeper.state.sts_requests["unavailable"] == 1


def test_https_sent_ahead_trusts_what_botocore_trusts(tmp_path: Path) -> None:
    with recorded.serve(tls=tmp_path / "tls") as server:
        server.answer = recorded.ok_answer()
        s = setup(tmp_path, server.url)
        # the CA botocore would use (no --ca-bundle): it does not know this server's CA
        assert stsquery.ca_file(s.aws) == get_cert_path(True)
        _, without = first_exchange(s)
        headstart.begin(s)
        _, ahead = first_exchange(s)
        assert isinstance(without, Unreachable) and "TLS verification failed" in str(without)
        assert str(ahead) == str(without) and server.requests == []

        trusted = dataclasses.replace(s, aws=dataclasses.replace(s.aws, ca_bundle=tmp_path / "tls" / "ca.crt"))
        assert stsquery.ca_file(trusted.aws) == str(tmp_path / "tls" / "ca.crt")
        headstart.begin(trusted)
        wait_for_requests(server, 1)
        service, creds = first_exchange(trusted)
        assert getattr(creds, "access_key_id", None) == "EXAMPLEACCESSKEY0001"
        assert len(server.requests) == 1 and service.keeper._client is None


HOOK = """
import sys, threading
port, module, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
sent = threading.Event()
order = []

def hook(event, args):
    if event == "socket.connect" and isinstance(args[1], tuple) and args[1][1] == port and not sent.is_set():
        order.append("sts request")
        sent.set()
    elif event == "import" and args[0] == module and "imported" not in order:
        sent.wait(5)  # the request, when it goes ahead, is sent while this import waits
        order.append("imported")
        open(out, "w").write(",".join(order))

sys.addaudithook(hook)
sys.argv = ["supervisor", *sys.argv[4:]]
from supervisor.__main__ import main
main()
"""


# asyncio and structlog (~35 ms together) load after the request too, and botocore (~55 ms): the
# request is plain HTTP, and the answer arrives while they load.
@pytest.mark.parametrize(("command", "module"), [("restore", "supervisor.replica.restore"), ("restore", "asyncio"),
                                                 ("restore", "structlog"), ("restore", "botocore"),
                                                 ("replicate", "supervisor.jobs.replicate"), ("replicate", "asyncio"),
                                                 ("replicate", "botocore")])
def test_the_sts_request_goes_out_before_the_commands_machinery_is_imported(
        sts: recorded.Recorder, tmp_path: Path, command: str, module: str) -> None:
    s = setup(tmp_path, sts.url)
    out = tmp_path / "order"
    port = sts.url.rsplit(":", 1)[1]
    args = [sys.executable, "-OO", "-c", HOOK, port, module, str(out), command,
            "--config", str(tmp_path / "litestream.yml"), "--litestream", "/bin/true"]
    args += ["--timeout", "3"] if command == "restore" else ["--health-addr", f"127.0.0.1:{free_port()}"]
    proc = subprocess.Popen(args, env={**s.environment, "PYTHONPATH": str(ROOT)}, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not out.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.1)  # the file is written in one call; let it land
    finally:
        proc.kill()
        proc.wait()
    assert out.read_text() == "sts request,imported"


@pytest.mark.parametrize("answer", [recorded.load("sts-error.InternalError.xml"), (200, b"<html>console</html>")])
def test_giving_up_on_sts_says_why_it_kept_failing(sts: recorded.Recorder, tmp_path: Path,
                                                   answer: tuple[int, bytes]) -> None:
    """When --timeout runs out mid-retry, the last failure is the message (it was 'STS at X: gave up
    after --timeout 2s (gave up after --timeout 2s)', the reason lost)."""
    sts.answer = answer
    s = setup(tmp_path, sts.url)
    service = CredentialService(s, State(), lsconfig.load_for(s))
    service.keeper.backoff = dataclasses.replace(service.keeper.backoff, initial_seconds=0.3, max_seconds=0.5)
    with pytest.raises(Unreachable) as e:
        asyncio.run(service.keeper.obtain(Budget(1.5)))
    message = str(e.value)
    assert message.count("gave up after --timeout 1.5s") == 1 and "will retry" not in message
    assert ("InternalError" if answer[0] == 500 else "not an STS answer") in message, message
    assert len(sts.requests) >= 2  # it did retry before giving up


def test_credentials_that_expired_already_are_a_failed_exchange_not_a_refresh_every_second(
        sts: recorded.Recorder, tmp_path: Path) -> None:
    """Taken as they came, they were served to no one (the broker answers 503 for them) and
    refreshed every second for ever (the next refresh is never sooner than 1 s)."""
    sts.answer = recorded.load("assume-role-with-web-identity.ok.xml")  # Expiration 2026-01-01T01:00:00Z
    s = setup(tmp_path, sts.url)
    service, error = first_exchange(s)
    assert isinstance(error, Unreachable), error
    assert "expired already" in str(error) and "2026-01-01T01:00:00Z" in str(error)
    assert service.keeper.current is None and service.keeper.state.sts_requests["unavailable"] == 1
