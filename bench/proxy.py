"""A counting HTTP proxy in front of the store: every request a client sends, who sent it and what
it was, and the status it got; and the outage switch of tests/bed/net.py's Forwarder.

Bytes are forwarded as they arrive; a copy of each direction is parsed on the side (HTTP/1.1
heads, Content-Length and chunked bodies, 100-continue), so counting adds no waiting. Who sent a
request is told by its User-Agent: botocore is the supervisor (and its plain-HTTP first STS
request says `litestream-supervisor`), the Go SDK is Litestream. What it was comes from the
method, the query and the key: STS, LIST (of level 0 or of the whole prefix), GET, PUT, HEAD,
DELETE; of an LTX file, the lease, or the lease probe.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import re
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass

from tests.bed.net import free_port

LEVEL = re.compile(r"/[0-9a-f]{4}/$")


@dataclass
class Request:
    at: float  # time.time() when its head was read
    who: str  # supervisor | litestream | other
    op: str  # STS | LIST | GET | PUT | HEAD | DELETE | POST | ...
    what: str  # ltx-L0 | ltx | lease | lease-probe | prefix | level-0 | ... (what the key or listing is)
    key: str
    proxy: str  # which proxy it went through (s3, sts)
    status: int = 0  # 0: no answer seen (the connection was cut first)
    answered: float = 0.0  # time.time() when the answer's head was read
    answer_bytes: int = 0  # the answer's body, as read (chunked or not)

    @property
    def seconds(self) -> float:
        return self.answered - self.at if self.answered else float("nan")


def who_sent(user_agent: str) -> str:
    ua = user_agent.lower()
    if "botocore" in ua or "boto3" in ua or "litestream-supervisor" in ua or "python-urllib" in ua:
        return "supervisor"
    if "aws-sdk-go" in ua or "litestream" in ua:
        return "litestream"
    return "other"


def classify(method: str, target: str) -> tuple[str, str, str]:
    """(op, what, key) of one request line's method and target (path-style addressing)."""
    parsed = urllib.parse.urlsplit(target)
    query = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
    path = urllib.parse.unquote(parsed.path).lstrip("/")
    bucket, _, key = path.partition("/")
    if method == "POST" and not bucket:
        return "STS", "sts", ""
    if "Action" in query:
        return "STS", "sts", ""
    if method == "GET" and not key:
        prefix = query.get("prefix", [""])[0]
        return "LIST", ("level-0" if prefix.endswith("/0000/") else "level" if LEVEL.search(prefix) else "prefix"), \
            prefix
    if key.endswith(".lease"):
        what = "lease"
    elif key.endswith(".lease-probe"):
        what = "lease-probe"
    elif key.endswith(".ltx"):
        what = "ltx-L0" if "/0000/" in key else "ltx"
    else:
        what = "other"
    return method, what, key


class _Parser:
    """Passive HTTP/1.1 message framing for one direction of one connection."""

    def __init__(self, on_head: object) -> None:
        self.buf = bytearray()
        self.on_head = on_head  # (first line, headers) -> body mode: ("len", n) | ("chunked",) | ("none",)
        self.state = "head"
        self.left = 0
        self.sink: Request | None = None  # the request whose answer's body is being read

    def feed(self, data: bytes) -> None:
        self.buf += data
        while True:
            if self.state == "head":
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(self.buf) > 1 << 16:
                        self.buf.clear()  # not HTTP as we know it: stop looking
                    return
                head = bytes(self.buf[:end]).decode("latin-1")
                del self.buf[:end + 4]
                first, *lines = head.split("\r\n")
                headers = {}
                for line in lines:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                mode = self.on_head(first, headers)  # type: ignore[operator]
                self.sink = mode[-1] if isinstance(mode[-1], Request) else None
                if mode[0] == "len":
                    self.state, self.left = "body", mode[1]
                elif mode[0] == "chunked":
                    self.state = "chunk-size"
                continue
            if self.state == "body":
                take = min(self.left, len(self.buf))
                del self.buf[:take]
                self.left -= take
                if self.sink is not None:
                    self.sink.answer_bytes += take
                if self.left:
                    return
                self.state = "head"
                continue
            if self.state == "chunk-size":
                end = self.buf.find(b"\r\n")
                if end < 0:
                    return
                size = int(bytes(self.buf[:end]).split(b";")[0].strip() or b"0", 16)
                del self.buf[:end + 2]
                if size == 0:
                    self.state = "trailers"
                else:
                    self.state, self.left = "chunk-data", size + 2
                continue
            if self.state == "chunk-data":
                take = min(self.left, len(self.buf))
                del self.buf[:take]
                self.left -= take
                if self.sink is not None:
                    self.sink.answer_bytes += max(0, take - max(0, 2 - self.left))  # not the chunk's CRLF
                if self.left:
                    return
                self.state = "chunk-size"
                continue
            if self.state == "trailers":
                end = self.buf.find(b"\r\n")
                if end < 0:
                    return
                del self.buf[:end + 2]
                if end == 0:
                    self.state = "head"
                continue


def _body_mode(headers: dict[str, str], no_body: bool = False) -> tuple:
    if no_body:
        return ("none",)
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return ("chunked",)
    length = int(headers.get("content-length") or 0)
    return ("len", length) if length else ("none",)


class CountingProxy:
    """Listen on 127.0.0.1:`port`, forward to 127.0.0.1:`target_port`, count what passes."""

    def __init__(self, target_port: int, name: str = "s3", port: int | None = None,
                 records: list[Request] | None = None) -> None:
        self.target_port = target_port
        self.name = name
        self.port = port or free_port()
        self.records: list[Request] = records if records is not None else []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name=f"proxy-{name}")
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _call(self, coro: object) -> object:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)  # type: ignore[arg-type]

    def start(self) -> CountingProxy:
        if not self._thread.is_alive():
            self._thread.start()
        self._call(self._listen())
        return self

    restore = start

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", self.port, reuse_address=True,
                                                  backlog=1024)

    def cut(self) -> None:
        """The store is gone: connections refused and every open one closed."""
        self._call(self._cut())

    async def _cut(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            with contextlib.suppress(Exception):
                writer.transport.abort()
        self._writers.clear()

    def stop(self) -> None:
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        pending: list[tuple[Request, bool]] = []  # requests awaiting their answer (HEAD: no body)

        def on_request(first: str, headers: dict[str, str]) -> tuple:
            method, _, rest = first.partition(" ")
            target = rest.rsplit(" ", 1)[0]
            op, what, key = classify(method, target)
            record = Request(time.time(), who_sent(headers.get("user-agent", "")), op, what, key, self.name)
            with self._lock:
                self.records.append(record)
            pending.append((record, method == "HEAD"))
            return _body_mode(headers)

        def on_response(first: str, headers: dict[str, str]) -> tuple:
            try:
                status = int(first.split()[1])
            except (IndexError, ValueError):
                status = -1
            if 100 <= status < 200:
                return ("none",)
            head_only = False
            if pending:
                record, head_only = pending.pop(0)
                record.status, record.answered = status, time.time()
                return (*_body_mode(headers, no_body=head_only or status in (204, 304)), record)
            return _body_mode(headers, no_body=head_only or status in (204, 304))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, parser: _Parser) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    try:
                        parser.feed(data)
                    except (ValueError, IndexError):
                        parser.buf.clear()
                        parser.state = "head"
                    await dst.drain()
            except (OSError, asyncio.IncompleteReadError, RuntimeError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    dst.close()

        try:
            await asyncio.gather(pipe(reader, up_writer, _Parser(on_request)),
                                 pipe(up_reader, writer, _Parser(on_response)))
        finally:
            for w in (writer, up_writer):
                self._writers.discard(w)
                with contextlib.suppress(Exception):
                    w.close()


def counts(records: list[Request], since: float = 0.0, until: float = float("inf"),
           **match: str) -> Counter[tuple[str, str, str]]:
    """(who, op, what) -> requests, within [since, until), where every field in `match` agrees."""
    out: Counter[tuple[str, str, str]] = Counter()
    for r in records:
        if since <= r.at < until and all(getattr(r, k) == v for k, v in match.items()):
            out[(r.who, r.op, r.what)] += 1
    return out


def per_second(records: list[Request], start: float, end: float, **match: str) -> list[int]:
    """Requests in each whole second from `start` to `end` (a time series)."""
    times = sorted(r.at for r in records if all(getattr(r, k) == v for k, v in match.items()))
    bins = []
    t = start
    while t < end:
        bins.append(bisect.bisect_left(times, t + 1) - bisect.bisect_left(times, t))
        t += 1
    return bins
