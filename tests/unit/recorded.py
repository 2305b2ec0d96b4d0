"""MinIO's recorded answers (tests/fixtures/minio-sts, copied from shared/fixtures) served over
real HTTP on loopback, so the product's own botocore clients parse them."""

from __future__ import annotations

import http.server
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

FIXTURES = Path(__file__).parent.parent / "fixtures" / "minio-sts"


def load(name: str) -> tuple[int, bytes]:
    """(status, body) as MinIO sends it: line 1 of the file is `<!-- HTTP NNN -->`."""
    first, _, body = (FIXTURES / name).read_text().partition("\n")
    return int(first.split()[2]), b'<?xml version="1.0" encoding="UTF-8"?>\n' + body.encode()


def ok_answer(expires_in: float = 3600) -> tuple[int, bytes]:
    """MinIO's recorded success with its Expiration moved to `expires_in` from now (recorded on
    2025-12-31, it expired at 2026-01-01T01:00:00Z: the keeper refuses expired credentials)."""
    import datetime

    status, body = load("assume-role-with-web-identity.ok.xml")
    when = datetime.datetime.fromtimestamp(time.time() + expires_in, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    recorded_expiry = b"<Expiration>2026-01-01T01:00:00Z</Expiration>"
    return status, body.replace(recorded_expiry, f"<Expiration>{when}</Expiration>".encode())


class Recorder:
    """Answers every request with `answer`; keeps (headers, form) of each request."""

    def __init__(self) -> None:
        self.answer: tuple[int, bytes] = (500, b"")
        self.requests: list[tuple[dict[str, str], dict[str, list[str]]]] = []
        self.paths: list[str] = []
        self.url = ""


def tls_context(directory: Path) -> ssl.SSLContext:
    """A server context for 127.0.0.1 under a fresh CA, written to directory/ca.crt."""
    from tests.bed.oidc import HOST, Issuer

    issuer = Issuer(directory)  # its CA and 127.0.0.1 certificate; its server is not started
    assert HOST == "127.0.0.1"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(issuer._server_cert, issuer._server_key)
    return ctx


@contextmanager
def serve(tls: Path | None = None) -> Iterator[Recorder]:
    """tls: serve HTTPS, its CA at tls/ca.crt."""
    recorder = Recorder()

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0)).decode()
            recorder.requests.append((dict(self.headers), urllib.parse.parse_qs(body)))
            recorder.paths.append(self.path)
            status, payload = recorder.answer
            self.send_response(status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = _answer  # noqa: N815 (http.server's naming)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        httpd.socket = tls_context(tls).wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    recorder.url = f"{'https' if tls else 'http'}://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield recorder
    finally:
        httpd.shutdown()
        httpd.server_close()
