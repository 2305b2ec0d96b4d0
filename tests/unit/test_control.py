"""Litestream's control socket: the HTTP answers it gives (as Go's net/http writes them), the socket
the child is given, and a path too long for a Unix socket."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from supervisor.litestream.control import MAX_SOCKET_PATH, Control, ControlError, parse_response, socket_config


def go_answer(status: int, body: dict[str, object], chunked: bool = False) -> bytes:
    payload = json.dumps(body).encode() + b"\n"  # json.Encoder.Encode ends with a newline
    if chunked:
        return (f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                f"{len(payload):x}\r\n").encode() + payload + b"\r\n0\r\n\r\n"
    return (f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
            ).encode() + payload


@pytest.mark.parametrize("chunked", [False, True])
def test_answers_are_read_as_go_writes_them(chunked: bool) -> None:
    body = {"status": "synced", "path": "/d/a.db", "txid": 7, "replicated_txid": 7}
    assert parse_response(go_answer(200, body, chunked)) == (200, body)
    assert parse_response(go_answer(409, {"error": "database not open: /d/a.db"}, chunked))[1]["error"]


def test_something_that_is_not_http_is_one_line() -> None:
    with pytest.raises(ControlError, match="not HTTP"):
        parse_response(b"garbage")


def test_sync_over_a_real_unix_socket(tmp_path: Path) -> None:
    """A server speaking as Litestream's: the request carries the path, wait and timeout."""
    seen: list[dict[str, object]] = []

    async def scenario() -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(
                b"content-length")))
            seen.append(json.loads(await reader.readexactly(length)))
            writer.write(go_answer(200, {"status": "synced", "txid": 9, "replicated_txid": 8}))
            await writer.drain()
            writer.close()

        path = tmp_path / "ls.sock"
        server = await asyncio.start_unix_server(handle, str(path))
        async with server:
            result = await Control(path).stage(Path("/d/a.db"), timeout_seconds=12.5)
            await Control(path).start(Path("/d/a.db"), timeout_seconds=3)
            await Control(path).stop(Path("/d/a.db"), timeout_seconds=3)
        assert (result.txid, result.replicated_txid, result.caught_up) == (9, 8, False)

    asyncio.run(scenario())
    # never a timeout with a sync or a start: Litestream 0.5.17 would take its read lock with the
    # request's context, which ends with the request (supervisor/litestream/control.py)
    assert seen == [{"path": "/d/a.db"}, {"path": "/d/a.db"}, {"path": "/d/a.db", "timeout": 3}]


def test_no_socket_is_a_control_error(tmp_path: Path) -> None:
    with pytest.raises(ControlError, match=r"ls\.sock"):
        asyncio.run(Control(tmp_path / "ls.sock").info())


def test_the_socket_is_private_and_a_long_path_is_refused(tmp_path: Path) -> None:
    assert socket_config(Path("/x/ls.sock")) == {"enabled": True, "path": "/x/ls.sock", "permissions": 0o600}
    with pytest.raises(ValueError, match="too long"):
        Control(tmp_path / ("x" * MAX_SOCKET_PATH))
