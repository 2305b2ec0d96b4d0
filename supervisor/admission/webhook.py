"""`webhook`: the mutating admission webhook, a thin HTTPS shell around supervisor/admission/inject.py.

POST /mutate takes an `admission.k8s.io/v1` AdmissionReview and answers one that echoes the
request's apiVersion, kind and uid: `patchType: JSONPatch` with the base64 patch, or
`allowed: false` with a message a person can act on. Only CREATE is mutated. Non-JSON bodies get
415, oversized ones 413. The certificate and key are re-read when their files change
(cert-manager rotates them) into the same TLS context: new connections get the new certificate,
no request is dropped. /livez, /readyz and /metrics as the sidecar has them.

Stopping (SIGTERM): /readyz fails at once, requests keep being served for `drain_seconds` (while
the Service's endpoints drop this pod and every API server and proxy learns of it: a terminating
pod leaves the EndpointSlice's ready set at once, but that change takes a moment to propagate),
then the listener closes and the process exits, well inside the pod's grace period. A second
signal cuts the drain short.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import ssl
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client import Counter as PromCounter

from supervisor.admission.inject import Defaults, Refused, inject
from supervisor.core import httpd
from supervisor.core.errors import ConfigError
from supervisor.core.logs import get_logger
from supervisor.core.signals import Signals

log = get_logger("webhook")
MAX_BODY_BYTES = 3 * 1024 * 1024  # the API server's own request limit is about 3 MiB
RELOAD_POLL_SECONDS = 2.0
DRAIN_SECONDS = 10.0  # manifests/webhook/deployment.yaml's grace period (30 s) covers it with room


@dataclass
class Certificates:
    """A TLS context whose certificate follows the files."""

    cert_file: Path
    key_file: Path
    context: ssl.SSLContext = field(init=False)
    stamp: tuple[float, float] = (0.0, 0.0)
    reloads: int = 0

    def __post_init__(self) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.load()

    def _stamp(self) -> tuple[float, float]:
        return (self.cert_file.stat().st_mtime, self.key_file.stat().st_mtime)

    def load(self) -> None:
        try:
            stamp = self._stamp()
            self.context.load_cert_chain(str(self.cert_file), str(self.key_file))
        except (OSError, ssl.SSLError) as e:
            raise ConfigError(f"--tls-cert-file / --tls-key-file: cannot load {self.cert_file} and "
                              f"{self.key_file}: {e}") from None
        self.stamp = stamp

    async def follow(self) -> None:
        """Re-read the pair when either file changes (until cancelled); a bad pair keeps the old one."""
        while True:
            await asyncio.sleep(RELOAD_POLL_SECONDS)
            try:
                changed = self._stamp() != self.stamp
            except OSError:
                continue  # mid-rotation: one of the files is being replaced
            if changed:
                try:
                    self.load()
                    self.reloads += 1
                    log.info("certificate_reloaded", cert_file=str(self.cert_file))
                except ConfigError as e:
                    log.error("certificate_reload_failed", error=str(e), detail="serving the previous certificate")


class Webhook:
    def __init__(self, defaults: Defaults) -> None:
        self.defaults = defaults
        self.started = False
        self.draining = False
        self.counts: Counter[str] = Counter()
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = PromCounter("litestream_supervisor_webhook_requests", "Admission requests by result.",
                                    ["result"], registry=self.registry)
        self.latency = Histogram("litestream_supervisor_webhook_latency_seconds", "Time to answer /mutate.",
                                 registry=self.registry, buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5))

    def review(self, body: dict[str, Any]) -> dict[str, Any]:
        """The AdmissionReview answer for one request (pure apart from counting)."""
        request = body.get("request") or {}
        uid = request.get("uid", "")
        answer: dict[str, Any] = {"uid": uid, "allowed": True}
        result = "skipped"
        if request.get("operation", "CREATE") == "CREATE" and isinstance(request.get("object"), dict):
            pod = request["object"]
            try:
                injection = inject(pod, self.defaults, request.get("namespace") or None)
            except Refused as e:
                answer = {"uid": uid, "allowed": False, "status": {"code": 403, "message": str(e)}}
                result = "refused"
                log.warning("admission_refused", namespace=request.get("namespace"),
                            pod=(pod.get("metadata") or {}).get("name") or (pod.get("metadata") or {}).get(
                                "generateName"), reason=str(e))
            else:
                if injection.patch:
                    answer["patchType"] = "JSONPatch"
                    answer["patch"] = base64.b64encode(json.dumps(injection.patch).encode()).decode()
                    result = "injected"
                if injection.warnings:  # shown to whoever created the pod (a controller: nobody; see README)
                    answer["warnings"] = [f"litestream-supervisor: {w}" for w in injection.warnings]
        self.requests.labels(result).inc()
        return {"apiVersion": body.get("apiVersion", "admission.k8s.io/v1"),
                "kind": body.get("kind", "AdmissionReview"), "response": answer}

    async def handle(self, request: httpd.Request) -> httpd.Response:
        if request.path == "/mutate" and request.method == "POST":
            if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
                return httpd.Response(415, b"expected Content-Type: application/json\n")
            started = time.perf_counter()
            try:
                body = json.loads(request.body)
                if not isinstance(body, dict):
                    raise ValueError("not an object")
            except ValueError:
                self.requests.labels("bad_request").inc()
                return httpd.Response(400, b"expected an AdmissionReview JSON object\n")
            answer = self.review(body)
            self.latency.observe(time.perf_counter() - started)
            return httpd.Response(200, json.dumps(answer).encode(), "application/json")
        if request.method != "GET":
            return httpd.Response(405, b"method not allowed\n")
        if request.path == "/livez":
            return httpd.Response(200, b"ok\n")
        if request.path == "/readyz":
            if self.draining:
                return httpd.Response(503, b"draining: stopping\n")
            return httpd.Response(200 if self.started else 503, b"ok\n" if self.started else b"starting\n")
        if request.path == "/metrics":
            return httpd.Response(200, generate_latest(self.registry), CONTENT_TYPE_LATEST)
        return httpd.Response(404, b"not found: try POST /mutate, /livez, /readyz, /metrics\n")


async def main(defaults: Defaults, host: str, port: int, cert_file: Path, key_file: Path,
               signals: Signals, drain_seconds: float = DRAIN_SECONDS) -> int:
    certificates = Certificates(cert_file, key_file)
    webhook = Webhook(defaults)
    server = await httpd.start(webhook.handle, host, port, ssl=certificates.context,
                               methods=frozenset({"GET", "POST"}), max_body=MAX_BODY_BYTES)
    follower = asyncio.create_task(certificates.follow(), name="certificates")
    webhook.started = True
    log.info("webhook_listening", addr=f"{host}:{httpd.bound_port(server)}", image=defaults.image)
    try:
        await signals.stop.wait()
        webhook.draining = True  # not ready first: the endpoints drop this pod while it still answers
        log.info("webhook_draining", seconds=drain_seconds)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(signals.force.wait(), drain_seconds)
    finally:
        webhook.started = False
        follower.cancel()
        server.close()
        await server.wait_closed()
    return 0
