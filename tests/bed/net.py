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
    the same port. `swallow()` keeps every connection open and forwards nothing either way (a
    path that hangs: no RST, no FIN, as a partitioned network); `unswallow()` ends that.
    `hold_responses(s)` forwards requests at once but each answer only after `s` seconds (the
    server acts, the client gives up first).
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
        self._flowing = threading.Event()
        self._flowing.set()
        self.hold_seconds = 0.0

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

    def swallow(self) -> None:
        self._flowing.clear()

    def unswallow(self) -> None:
        self._flowing.set()

    def hold_responses(self, seconds: float) -> None:
        self.hold_seconds = seconds

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
            # The 5 s bounds the connect only: left on, every keep-alive connection idle for 5 s was
            # closed under the client, racing its next request (a spurious STS failure per refresh).
            upstream.settimeout(None)
            with self._lock:
                self._conns.update((client, upstream))
            for a, b, throttle, answers in ((client, upstream, None, False), (upstream, client, self.throttle, True)):
                threading.Thread(target=self._pipe, args=(a, b, throttle, answers), daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _pipe(self, src: socket.socket, dst: socket.socket, throttle: float | None, answers: bool) -> None:
        try:
            while data := src.recv(16384):
                self._flowing.wait()  # swallowed: held here, the connection left open
                if answers and self.hold_seconds:
                    time.sleep(self.hold_seconds)
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
