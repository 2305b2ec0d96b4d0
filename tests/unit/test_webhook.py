"""The webhook over real TLS, with a real client: the AdmissionReview envelope, refusals, 415,
an oversized body, and a certificate rotated under load without one failed request."""

from __future__ import annotations

import base64
import datetime
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import jsonpatch
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.bed.net import free_port, wait_for_port
from tests.bed.pod import supervisor_cmd

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "admission"


class CA:
    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test webhook CA")])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self.key.public_key())
                     .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
                     .not_valid_after(now + datetime.timedelta(days=1))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .sign(self.key, hashes.SHA256()))

    def issue(self, cert_file: Path, key_file: Path) -> int:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        serial = x509.random_serial_number()
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "webhook.litestream-system.svc")]))
                .issuer_name(self.cert.subject).public_key(key.public_key()).serial_number(serial)
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(hours=1))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
                .sign(self.key, hashes.SHA256()))
        # write both, then swap them in, as cert-manager's Secret volume update does (atomic renames)
        for path, data in ((key_file, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption())),
                           (cert_file, cert.public_bytes(serialization.Encoding.PEM))):
            tmp = path.with_suffix(".new")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return serial

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cadata=self.cert.public_bytes(serialization.Encoding.PEM).decode())
        return ctx


def start_webhook(tmp_path: Path, cert: Path, key: Path, drain_seconds: float) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    log = open(tmp_path / "webhook.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(supervisor_cmd("webhook", "--addr", f"127.0.0.1:{port}", "--tls-cert-file", str(cert),
                                           "--tls-key-file", str(key), "--bucket", "litestream",
                                           "--endpoint", "http://minio.minio.svc:9000",
                                           "--role-arn", "arn:minio:iam:::role/oxnUw3DAuQF1uggjXGxI2AmW8IA",
                                           "--namespace", "litestream-system", "--log-format", "json",
                                           "--drain-seconds", str(drain_seconds)),
                            stdout=log, stderr=subprocess.STDOUT)
    log.close()
    wait_for_port(port, 30)
    return proc, port


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[int, CA, Path, Path]]:
    ca = CA()
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    ca.issue(cert, key)
    proc, port = start_webhook(tmp_path, cert, key, drain_seconds=0)
    try:
        yield port, ca, cert, key
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def post(port: int, ca: CA, body: bytes, content_type: str = "application/json") -> tuple[int, bytes, int]:
    conn = http.client.HTTPSConnection("localhost", port, context=ca.client_context(), timeout=10)
    try:
        conn.request("POST", "/mutate", body=body, headers={"Content-Type": content_type})
        peer = conn.sock.getpeercert(binary_form=True)  # type: ignore[union-attr]
        response = conn.getresponse()
        return response.status, response.read(), x509.load_der_x509_certificate(peer).serial_number
    finally:
        conn.close()


def review(pod: dict, namespace: str = "shop", operation: str = "CREATE") -> dict:
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "operation": operation, "namespace": namespace,
                        "kind": {"group": "", "version": "v1", "kind": "Pod"}, "object": pod}}


def test_envelope_patch_refusal_and_errors(server: tuple[int, CA, Path, Path]) -> None:
    port, ca, _, _ = server
    pod = json.loads((FIXTURES / "deployment-own-data-volume.pod.json").read_text())
    status, body, _ = post(port, ca, json.dumps(review(pod)).encode())
    answer = json.loads(body)
    assert status == 200 and answer["apiVersion"] == "admission.k8s.io/v1" and answer["kind"] == "AdmissionReview"
    response = answer["response"]
    assert response["uid"] == "705ab4f5-6393-11e8-b7cc-42010a800002" and response["allowed"] is True
    assert response["patchType"] == "JSONPatch"
    patched = jsonpatch.apply_patch(pod, json.loads(base64.b64decode(response["patch"])))
    assert [c["name"] for c in patched["spec"]["initContainers"]] == ["litestream-restore", "litestream"]
    # an UPDATE, or a pod not opted in: allowed, untouched
    update = json.loads(post(port, ca, json.dumps(review(pod, operation="UPDATE")).encode())[1])
    assert "patch" not in update["response"] and update["response"]["allowed"] is True
    # refused, with a message a person can act on
    pod["metadata"]["annotations"].pop("litestream-supervisor.io/db")
    refused = json.loads(post(port, ca, json.dumps(review(pod)).encode())[1])["response"]
    assert refused["allowed"] is False and "litestream-supervisor.io/db" in refused["status"]["message"]
    assert json.loads(post(port, ca, json.dumps(review(pod, namespace="litestream-system")).encode())[1]
                      )["response"]["allowed"] is False
    assert post(port, ca, b"<xml/>", "application/xml")[0] == 415
    assert post(port, ca, b"not json")[0] == 400
    # an oversized body is refused from its Content-Length, before it is read
    conn = http.client.HTTPSConnection("localhost", port, context=ca.client_context(), timeout=10)
    conn.putrequest("POST", "/mutate")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(4 * 1024 * 1024))
    conn.endheaders()
    assert conn.getresponse().status == 413
    conn.close()


def test_certificate_rotation_drops_no_request(server: tuple[int, CA, Path, Path]) -> None:
    port, ca, cert, key = server
    pod = json.dumps(review(json.loads((FIXTURES / "legacy-sidecar.pod.json").read_text()))).encode()
    first = post(port, ca, pod)[2]
    results: list[tuple[int, int]] = []
    failures: list[str] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            try:
                status, _, serial = post(port, ca, pod)
                results.append((status, serial))
            except (OSError, ssl.SSLError) as e:
                failures.append(repr(e))
            time.sleep(0.02)

    thread = threading.Thread(target=load)
    thread.start()
    time.sleep(0.5)
    second = ca.issue(cert, key)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not any(s == second for _, s in results[-5:]):
        time.sleep(0.2)
    time.sleep(0.5)
    stop.set()
    thread.join(timeout=15)
    assert not failures, failures[:3]
    assert all(status == 200 for status, _ in results) and len(results) > 20
    assert {s for _, s in results} == {first, second} and results[-1][1] == second


def test_health_and_metrics_over_tls(server: tuple[int, CA, Path, Path]) -> None:
    port, ca, _, _ = server
    for path, expected in (("/livez", 200), ("/readyz", 200), ("/metrics", 200)):
        conn = http.client.HTTPSConnection("localhost", port, context=ca.client_context(), timeout=10)
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read().decode()
        conn.close()
        assert response.status == expected
        if path == "/metrics":
            assert "litestream_supervisor_webhook_requests_total" in body
    assert socket.getaddrinfo("localhost", port)


def get(port: int, ca: CA, path: str) -> int:
    conn = http.client.HTTPSConnection("localhost", port, context=ca.client_context(), timeout=5)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


def test_sigterm_fails_readiness_first_keeps_serving_through_the_drain_then_exits(tmp_path: Path) -> None:
    """Issue 28 item 5: a terminating pod leaves the Service's ready endpoints at once (EndpointSlice
    `ready: false, terminating: true`: Kubernetes docs "Pod Lifecycle", termination of Pods;
    KEP-1672), but API servers and kube-proxy act on it only once the change reaches them; requests
    still sent meanwhile must be answered (a refused connection under failurePolicy Fail is a
    refused pod)."""
    ca = CA()
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    ca.issue(cert, key)
    drain = 2.0
    proc, port = start_webhook(tmp_path, cert, key, drain_seconds=drain)
    body = json.dumps(review(json.loads((FIXTURES / "deployment-own-data-volume.pod.json").read_text()))).encode()
    assert get(port, ca, "/readyz") == 200
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    while get(port, ca, "/readyz") != 503:
        assert time.monotonic() - sent < 1, "readiness still passing after SIGTERM"
        time.sleep(0.05)
    answered = 0
    while time.monotonic() - sent < drain - 0.5:
        status, answer, _ = post(port, ca, body)
        assert status == 200 and json.loads(answer)["response"]["allowed"] is True
        answered += 1
        time.sleep(0.1)
    assert answered >= 5 and proc.poll() is None
    assert proc.wait(timeout=drain + 5) == 0
    assert time.monotonic() - sent < drain + 5  # well inside the manifests' grace period (30 s)
    with pytest.raises(OSError):
        post(port, ca, body)


def test_a_second_signal_cuts_the_drain_short(tmp_path: Path) -> None:
    ca = CA()
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    ca.issue(cert, key)
    proc, port = start_webhook(tmp_path, cert, key, drain_seconds=60)
    proc.send_signal(signal.SIGTERM)
    while get(port, ca, "/readyz") != 503:
        time.sleep(0.05)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0 and time.monotonic() - sent < 5
