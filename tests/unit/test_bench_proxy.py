"""The counting proxy (bench/proxy.py) tells who sent what, frames bodies of every kind without
waiting on them, and counts per second."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from bench.proxy import CountingProxy, classify, counts, per_second, who_sent


def test_requests_are_named_by_what_they_touch() -> None:
    assert classify("GET", "/b/?list-type=2&prefix=app%2Fdb%2F0000%2F&start-after=x") == \
        ("LIST", "level-0", "app/db/0000/")
    assert classify("GET", "/b/?list-type=2&prefix=app%2Fdb%2F0001%2F")[:2] == ("LIST", "level")
    assert classify("GET", "/b/?list-type=2&prefix=app%2Fdb%2F")[:2] == ("LIST", "prefix")
    assert classify("PUT", "/b/app/db.lease")[:2] == ("PUT", "lease")
    assert classify("PUT", "/b/app/db.lease-probe")[:2] == ("PUT", "lease-probe")
    assert classify("PUT", "/b/app/db/0000/0000000000000001-0000000000000001.ltx")[:2] == ("PUT", "ltx-L0")
    assert classify("GET", "/b/app/db/0001/0000000000000001-0000000000000009.ltx")[:2] == ("GET", "ltx")
    assert classify("POST", "/")[:2] == ("STS", "sts")
    assert who_sent("Botocore/1.44.8 ua/2.1 os/linux") == "supervisor"
    assert who_sent("aws-sdk-go-v2/1.39.2 ua/2.1 os/linux lang/go#1.25") == "litestream"


class Store(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *_args: object) -> None:
        pass

    def do_PUT(self) -> None:
        if self.headers.get("Expect") == "100-continue":
            self.send_response_only(100)
            self.end_headers()
        if self.headers.get("Transfer-Encoding") == "chunked":
            while (size := int(self.rfile.readline().strip(), 16)) > 0:
                self.rfile.read(size + 2)
            self.rfile.readline()
        else:
            self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        body = b"x" * 5000
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i in range(0, len(body), 1000):
            self.wfile.write(b"%x\r\n" % 1000 + body[i:i + 1000] + b"\r\n")
        self.wfile.write(b"0\r\n\r\n")

    def do_HEAD(self) -> None:
        self.send_response(404)
        self.send_header("Content-Length", "123")
        self.end_headers()


def test_every_request_on_a_kept_alive_connection_is_counted_with_its_answer() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Store)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    proxy = CountingProxy(server.server_address[1]).start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=5)
        headers = {"User-Agent": "aws-sdk-go-v2/1.0"}
        conn.request("PUT", "/b/a/0000/x.ltx", body=b"y" * 3000, headers={**headers, "Expect": "100-continue"})
        conn.getresponse().read()
        conn.request("PUT", "/b/a.lease", body=iter([b"ab", b"cd"]), headers={"User-Agent": "Botocore/1"},
                     encode_chunked=True)
        conn.getresponse().read()
        conn.request("HEAD", "/b/a.lease", headers=headers)
        conn.getresponse().read()
        conn.request("GET", "/b/a/0001/y.ltx", headers=headers)
        assert len(conn.getresponse().read()) == 5000
        conn.close()
        deadline = time.monotonic() + 2
        while len([r for r in proxy.records if r.status]) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        proxy.stop()
        server.shutdown()
    seen = [(r.who, r.op, r.what, r.status) for r in proxy.records]
    assert [r.answer_bytes for r in proxy.records] == [0, 0, 0, 5000]
    assert seen == [("litestream", "PUT", "ltx-L0", 200), ("supervisor", "PUT", "lease", 200),
                    ("litestream", "HEAD", "lease", 404), ("litestream", "GET", "ltx", 200)]
    assert counts(proxy.records, who="litestream")[("litestream", "PUT", "ltx-L0")] == 1
    t0 = proxy.records[0].at
    assert sum(per_second(proxy.records, t0, t0 + 10)) == 4


def test_a_cut_refuses_connections_and_a_restore_listens_again() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Store)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    proxy = CountingProxy(server.server_address[1]).start()
    try:
        proxy.cut()
        refused = False
        try:
            socket.create_connection(("127.0.0.1", proxy.port), timeout=1).close()
        except OSError:
            refused = True
        assert refused
        proxy.restore()
        conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=5)
        conn.request("HEAD", "/b/k")
        assert conn.getresponse().status == 404
    finally:
        proxy.stop()
        server.shutdown()
