"""A minimal asyncio HTTP/1.1 server for the small endpoints we own (health, credentials, webhook).

One request per connection, bounded header and body size and read time: enough for kubelet
probes, Prometheus, an AWS SDK and the API server's admission calls, with no framework to pull in.
GET/HEAD by default; a server started with `methods` also takes POST bodies (Content-Length).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
           404: "Not Found", 405: "Method Not Allowed", 411: "Length Required", 413: "Payload Too Large",
           415: "Unsupported Media Type", 503: "Service Unavailable"}
MAX_HEADER_BYTES = 16384
READ_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes = b""


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"


Handler = Callable[[Request], Awaitable[Response]]


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    head = await reader.readuntil(b"\r\n\r\n")
    if len(head) > MAX_HEADER_BYTES:
        return None
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        return None
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    url = urlsplit(parts[1])
    return Request(parts[0], url.path, parse_qs(url.query, keep_blank_values=True), headers)


async def _read_body(reader: asyncio.StreamReader, request: Request, max_body: int) -> Request | Response:
    length = request.headers.get("content-length")
    if length is None or not length.isdigit():
        return Response(411, b"Content-Length required\n")
    if int(length) > max_body:
        return Response(413, f"body larger than {max_body} bytes\n".encode())
    body = await reader.readexactly(int(length))
    return Request(request.method, request.path, request.query, request.headers, body)


async def _serve_one(handler: Handler, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     methods: frozenset[str], max_body: int) -> None:
    try:
        request = await asyncio.wait_for(_read_request(reader), READ_TIMEOUT_SECONDS)
        if request is None:
            response = Response(400, b"bad request\n")
        elif request.method not in methods:
            response = Response(405, b"method not allowed\n")
        elif request.method == "POST":
            read = await asyncio.wait_for(_read_body(reader, request, max_body), READ_TIMEOUT_SECONDS)
            response = read if isinstance(read, Response) else await handler(read)
        else:
            response = await handler(request)
        body = b"" if request is not None and request.method == "HEAD" else response.body
        head = (f"HTTP/1.1 {response.status} {REASONS.get(response.status, '')}\r\n"
                f"Content-Type: {response.content_type}\r\n"
                f"Content-Length: {len(response.body)}\r\n"
                "Cache-Control: no-store\r\nConnection: close\r\n\r\n")
        writer.write(head.encode("latin-1") + body)
        await writer.drain()
    except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, OSError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def start(handler: Handler, host: str, port: int, *, ssl: Any = None,
                methods: frozenset[str] = frozenset({"GET", "HEAD"}), max_body: int = 0) -> asyncio.Server:
    """Bind now (so the port is known and errors surface at start-up); serve in the background."""
    return await asyncio.start_server(
        lambda r, w: _serve_one(handler, r, w, methods, max_body), host, port, limit=MAX_HEADER_BYTES,
        reuse_address=True, ssl=ssl,
    )


def bound_port(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])
