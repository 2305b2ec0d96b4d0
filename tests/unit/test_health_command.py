"""`litestream-supervisor health`: the not-ready runbook's way to read the sidecar's own
/readyz?verbose from inside its container (the image has Python, not wget or curl: issue 28)."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


class Sidecar(BaseHTTPRequestHandler):
    ready = False

    def do_GET(self) -> None:
        body = b"[+]credentials ok\n[-]lease failed: held by shop/web-abc\n" if self.path == "/readyz?verbose" \
            else b"not found\n"
        self.send_response(200 if Sidecar.ready else 503)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def sidecar() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Sidecar)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()


def health(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "supervisor", "health", *args], capture_output=True, text=True,
                          timeout=60, check=False)


def test_it_prints_each_check_and_exits_by_readiness(sidecar: int) -> None:
    Sidecar.ready = False
    out = health("--health-addr", f"0.0.0.0:{sidecar}")  # the sidecar's own 0.0.0.0 is asked on loopback
    assert out.returncode == 12 and "[-]lease failed: held by shop/web-abc" in out.stdout
    Sidecar.ready = True
    assert health("--health-addr", f"127.0.0.1:{sidecar}").returncode == 0


def test_nothing_listening_is_one_line() -> None:
    out = health("--health-addr", "127.0.0.1:1")
    assert out.returncode == 12 and len(out.stderr.strip().splitlines()) == 1 and "--health-addr" in out.stderr


def test_the_runbook_uses_it_and_no_tool_the_image_lacks() -> None:
    text = README.read_text()
    runbook = text.split("### Runbook: LitestreamSidecarNotReady", 1)[1].split("###", 1)[0]
    assert "litestream-supervisor health" in runbook
    assert not any(tool in text for tool in ("wget ", "curl "))
