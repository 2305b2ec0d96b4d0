"""Loopback networking helpers: free ports, waiting for a port, a killable TCP forwarder."""

from __future__ import annotations

import contextlib
import socket
import threading
import time


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout_seconds: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_seconds}s")


class Forwarder:
    """A TCP forwarder on 127.0.0.1 in front of a target port.

    `cut()` closes the listener and every open connection, so clients see connection refused
    (as when the server is down) while the server keeps running; `restore()` listens again on
    the same port.
    """

    def __init__(self, target_port: int, port: int | None = None,
                 throttle_bytes_per_second: float | None = None) -> None:
        self.target_port = target_port
        self.port = port or free_port()
        # Slows the server-to-client direction, to make a restore take longer than a credential lifetime.
        self.throttle = throttle_bytes_per_second
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    restore = start

    def cut(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            conns, self._conns = self._conns, set()
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()

    stop = cut

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns.update((client, upstream))
            for a, b, throttle in ((client, upstream, None), (upstream, client, self.throttle)):
                threading.Thread(target=self._pipe, args=(a, b, throttle), daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _pipe(self, src: socket.socket, dst: socket.socket, throttle: float | None) -> None:
        try:
            while data := src.recv(16384):
                dst.sendall(data)
                if throttle:
                    time.sleep(len(data) / throttle)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            with self._lock:
                self._conns.discard(src)
