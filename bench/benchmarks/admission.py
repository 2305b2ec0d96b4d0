"""The admission webhook over real TLS on loopback, and the pure injection function alone."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.measure import wait_until
from bench.runner import Benchmark, Row, log


def bench_admission(work: Path, requests: int = 400, seconds: float = 5.0) -> dict[str, Any]:
    """The webhook over real TLS on loopback: latency of one AdmissionReview for a typical pod
    (sequential), and throughput with 4 concurrent clients; plus the pure injection alone."""
    import http.client
    import ssl as ssl_mod

    from supervisor.admission.inject import Defaults, inject
    from tests.unit.test_webhook import CA, review

    fixture = json.loads((Path(__file__).parents[2] / "tests/fixtures/admission/deployment-own-data-volume.pod.json")
                         .read_text())
    defaults = Defaults(bucket="litestream", endpoint="http://minio:9000", role_arn="arn:minio:iam:::role/x")
    pure = []
    for _ in range(2000):
        t0 = time.perf_counter()
        inject(fixture, defaults, "shop")
        pure.append(time.perf_counter() - t0)
    ca = CA()
    cert, key = work / "tls.crt", work / "tls.key"
    ca.issue(cert, key)
    port = __import__("tests.bed.net", fromlist=["free_port"]).free_port()
    proc = subprocess.Popen([sys.executable, "-m", "supervisor", "webhook", "--addr", f"127.0.0.1:{port}",
                             "--tls-cert-file", str(cert), "--tls-key-file", str(key), "--bucket", "litestream",
                             "--log-level", "error", "--drain-seconds", "0"],  # a bench: no endpoints to drain
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    body = json.dumps(review(fixture)).encode()
    context: ssl_mod.SSLContext = ca.client_context()

    def one() -> float:
        t0 = time.perf_counter()
        conn = http.client.HTTPSConnection("localhost", port, context=context, timeout=10)
        conn.request("POST", "/mutate", body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        conn.close()
        assert response.status == 200
        return time.perf_counter() - t0

    try:
        wait_until(lambda: subprocess.run(["bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{port}"],
                                          check=False).returncode == 0, 30, "webhook up")
        latencies = [one() for _ in range(requests)]
        done = [0]
        stop = time.monotonic() + seconds

        def client() -> None:
            while time.monotonic() < stop:
                one()
                done[0] += 1

        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    def ms(values: list[float], p: float) -> float:
        ordered = sorted(values)
        return round(ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] * 1000, 3)

    out = {"requests": requests, "p50_ms": ms(latencies, 50), "p99_ms": ms(latencies, 99),
           "throughput_per_second": round(done[0] / seconds, 1), "clients": 4,
           "inject_function_p50_ms": ms(pure, 50),
           "note": "one TLS connection per request (as the API server's client does when it does not reuse), "
                   "loopback, a Deployment's pod with the kube-api-access volume and managedFields"}
    log(f"admission: {out}")
    return out



BENCHMARKS = {"admission": Benchmark(lambda bed, work, a: bench_admission(work))}


def rows(r: dict[str, Any]) -> list[Row]:
    if "admission" not in r:
        return []
    a = r["admission"]
    return [
        ("admission: one AdmissionReview over TLS, p50 / p99", f"{a['p50_ms']} ms / {a['p99_ms']} ms", "", ""),
        (f"admission: throughput, {a['clients']} clients", f"{a['throughput_per_second']} /s", "", ""),
        ("admission: the injection function alone, p50", f"{a['inject_function_p50_ms']} ms", "", ""),
    ]


def notes(r: dict[str, Any], results: dict[str, Any]) -> list[str]:
    return ["- admission: " + (r["admission"]["note"] + "." if "admission" in r else "not measured.")]
