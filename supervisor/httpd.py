"""A minimal asyncio HTTP/1.1 server for the two small endpoints we own (health, credentials).

GET only, one request per connection, bounded header size and read time: enough for kubelet
probes, Prometheus and an AWS SDK, with no framework to pull in.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
           404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}
MAX_HEADER_BYTES = 16384
READ_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names


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


async def _serve_one(handler: Handler, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        request = await asyncio.wait_for(_read_request(reader), READ_TIMEOUT_SECONDS)
        if request is None:
            response = Response(400, b"bad request\n")
        elif request.method not in ("GET", "HEAD"):
            response = Response(405, b"method not allowed\n")
        else:
            response = await handler(request)
        body = b"" if request is not None and request.method == "HEAD" else response.body
        head = (f"HTTP/1.1 {response.status} {REASONS.get(response.status, '')}\r\n"
                f"Content-Type: {response.content_type}\r\n"
                f"Content-Length: {len(response.body)}\r\n"
                "Cache-Control: no-store\r\nConnection: close\r\n\r\n")
        writer.write(head.encode("latin-1") + body)
        await writer.drain()
    except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def start(handler: Handler, host: str, port: int) -> asyncio.Server:
    """Bind now (so the port is known and errors surface at start-up); serve in the background."""
    return await asyncio.start_server(
        lambda r, w: _serve_one(handler, r, w), host, port, limit=MAX_HEADER_BYTES, reuse_address=True,
    )


def bound_port(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])
